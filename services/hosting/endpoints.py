"""SageMaker hosting on the local stack: an endpoint created through the API or CloudFormation is served by its
own container (``containers``: the model's image, by digest, pulled from the registry the emulator's ECR names),
its ``model.tar.gz`` extracted at ``/opt/ml/model`` read-only. No AWS credentials go in: the model is mounted.

The gateway finds the container through the emulator's route table (``services.emulator.sagemaker_endpoints``):
``InvokeEndpoint`` for a hosted endpoint goes there, any other endpoint to the stack's own serving.

Where it runs (chosen by ``hosting_network``):
- compose: the stack's gateway container is running (compose project ``dogops``): the model joins the
  gateway's network (``dogops_default``), the gateway reaches it by container name on port 8080, and the host on
  a published 127.0.0.1 port;
- native (``dogops up``, tests): host networking, the server bound to 127.0.0.1 on a free port, like the
  stack's own ``serve`` process; both reach it there.
``DOGOPS_HOSTING_NETWORK`` overrides the choice (a network name, or ``host`` for native). The compose stack's
own hoster (``services.jobs.host_runner``) passes ``gateway_namespace()`` instead: the model shares the gateway's
network namespace, as compose's ``serving`` does, so the samples URL ``dogops env`` prints is its loopback too.

Hosters take turns through the emulator: each ``claim``s the endpoint's current config first (one wins; the
others wait for the outcome), and the route it registers names that config, which makes the endpoint
``InService`` where the emulator leaves hosting to others (``DOGOPS_HOSTING=host``); a model that cannot be
hosted is reported (``Failed``, or an update rolled back).

While the hoster runs, each container's log goes to CloudWatch Logs and its use to CloudWatch metrics as an
instance's (``services.observability.instances.ContainerWatch``).

Containers carry the label ``dogops.endpoint=<name>``; each model is extracted under ``DOGOPS_HOSTING_DIR``
(default ``<tmp>/dogops-hosting``) and removed with its container.
"""

import json
import logging
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import requests

from ..observability.instances import ContainerWatch
from ..security.sigv4 import RootAuth
from ..stack import settings
from .containers import (
    ROUTE_LABEL,
    Hosted,
    HostingError,
    container_healthy,
    docker,
    engine_answers,
    extract_model,
    ping_timeout,
    published_url,
    remove,
    run_model,
)

log = logging.getLogger(__name__)

LABEL = "dogops.endpoint"
CONFIG_LABEL = "dogops.endpoint-config"
DIR_LABEL = "dogops.model-dir"


def hosting_network() -> str | None:
    """The Docker network models join: ``DOGOPS_HOSTING_NETWORK`` (``host``: none), else the network of the
    compose stack's running gateway container, else None (native: host networking)."""
    explicit = os.environ.get("DOGOPS_HOSTING_NETWORK")
    if explicit:
        return None if explicit == "host" else explicit
    project = os.environ.get("COMPOSE_PROJECT_NAME") or "dogops"
    found = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                   "--filter", "label=com.docker.compose.service=gateway", check=False).stdout.split()
    if not found:
        return None
    networks = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", found[0]).stdout)
    default = f"{project}_default"
    return default if default in networks else next(iter(networks), None)


def _gateway_container() -> str | None:
    project = os.environ.get("COMPOSE_PROJECT_NAME") or "dogops"
    found = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                   "--filter", "label=com.docker.compose.service=gateway", check=False).stdout.split()
    return found[0] if found else None


def gateway_namespace() -> str:
    """``container:<id>`` of the compose stack's running gateway (HostingError when there is none)."""
    found = _gateway_container()
    if found is None:
        raise HostingError("the compose stack's gateway is not running: no network to host endpoints on")
    return f"container:{found}"


def _fetch_allow(network: str | None) -> str:
    """Where the model may fetch photos by URL: the stack's gateway (its ``/samples``)."""
    if network and not network.startswith("container:"):
        return f"gateway:{settings.GATEWAY_PORT}"
    return urlparse(settings.gateway_url()).netloc


def _namespace_port() -> int:
    """A port for a model in the gateway's namespace that no other endpoint container has."""
    taken = {urlparse(c["labels"].get(ROUTE_LABEL, "")).port for c in _containers(None)}
    taken |= {settings.GATEWAY_PORT, settings.SERVING_PORT}
    return random.choice([p for p in range(20000, 30000) if p not in taken])


def _containers(endpoint: str | None) -> list[dict]:
    """The endpoint's containers (None: every endpoint's): name, labels, running."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}" + (f"={endpoint}" if endpoint else "")).stdout.split()
    if not ids:
        return []
    return [{"name": c["Name"].lstrip("/"), "labels": c["Config"]["Labels"] or {}, "running": c["State"]["Running"]}
            for c in json.loads(docker("inspect", *ids).stdout)]


def _routes_url(session, endpoint: str) -> str:
    sagemaker = session.client("sagemaker")
    return settings.routes_url(sagemaker.meta.endpoint_url, sagemaker.meta.region_name or settings.REGION, endpoint)


def register_route(routes_url: str, url: str, container: str = "", config: str = "") -> None:
    """Route ``InvokeEndpoint`` for an endpoint to the model server at ``url``: ``routes_url`` is its entry in the
    emulator's route table (``<emulator>/_dogops/hosting/<region>/<endpoint>``); ``config``: the endpoint config
    it serves (the endpoint is then in service)."""
    answer = requests.put(routes_url, timeout=10, auth=RootAuth(),
                          json={"url": url, "container": container, "config": config})
    if answer.status_code != 200:
        raise HostingError(f"the emulator did not take the route {routes_url}: {answer.status_code} "
                           f"{answer.text[:500]}")


def _post(routes_url: str, what: str, body: dict) -> dict:
    answer = requests.post(f"{routes_url}/{what}", timeout=10, auth=RootAuth(), json=body)
    if answer.status_code != 200:
        raise HostingError(f"the emulator refused {what} for {routes_url}: {answer.status_code} {answer.text[:500]}")
    return answer.json()


def claim(routes_url: str, config: str) -> bool:
    """Take the hosting of the endpoint on ``config``; False when another hoster has it."""
    return bool(_post(routes_url, "claim", {"config": config}).get("claimed"))


def _register(session, hosted: Hosted, config: str) -> None:
    register_route(_routes_url(session, hosted.endpoint), hosted.route, hosted.container, config)


def _model_of(session, endpoint: str) -> tuple[str, dict]:
    """The endpoint's config name, and its first variant's container definition (Image, ModelDataUrl, ...)."""
    sagemaker = session.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    return config, model.get("PrimaryContainer") or model["Containers"][0]


def _download(session, url: str, into: Path) -> None:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.path.endswith(".tar.gz"):
        raise HostingError(f"ModelDataUrl must be an s3:// model.tar.gz, not {url}")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "model.tar.gz"
        session.client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(archive))
        extract_model(archive, into)


def hosting_dir() -> Path:
    return Path(os.environ.get("DOGOPS_HOSTING_DIR") or Path(tempfile.gettempdir()) / "dogops-hosting")


def host_endpoint(name: str, session, network: str | None = None, image_of=None) -> Hosted:
    """Serve endpoint ``name`` (on the emulator ``session`` points at) from a container, and route the
    gateway's ``InvokeEndpoint`` there. Already serving its current config: nothing changes. After an update:
    the new container first, then the route, then the old one goes (no downtime). ``network``: as
    ``run_model``'s (default ``hosting_network()``); ``image_of(uri)``: the local image for the model's image
    (default: itself). Another hoster that claimed this config first: its outcome, waited for."""
    config, definition = _model_of(session, name)
    old = _containers(name)
    for container in old:
        labels = container["labels"]
        if container["running"] and labels.get(CONFIG_LABEL) == config:
            route = labels[ROUTE_LABEL]
            url = route if route.startswith("http://127.0.0.1:") else published_url(container["name"])
            if container_healthy(container["name"], url, labels):
                hosted = Hosted(name, container["name"], url, route, 0.0)
                _register(session, hosted, config)
                for other in old:
                    if other is not container:
                        _discard(other)
                return hosted
    routes_url = _routes_url(session, name)
    if not claim(routes_url, config):
        return _outcome(session, name, config)
    container = f"dogops-endpoint-{name}-{uuid.uuid4().hex[:8]}"
    model_dir = hosting_dir() / container
    try:
        _download(session, definition["ModelDataUrl"], model_dir)
        network = network or hosting_network()
        env = {**(definition.get("Environment") or {}), "DOGOPS_FETCH_ALLOW": _fetch_allow(network)}
        image = image_of(definition["Image"]) if image_of else definition["Image"]
        port = _namespace_port() if network and network.startswith("container:") else 8080
        hosted = run_model(image, model_dir, container, network, env,
                           {LABEL: name, CONFIG_LABEL: config, DIR_LABEL: str(model_dir)}, port)
    except BaseException as exc:
        shutil.rmtree(model_dir, ignore_errors=True)
        reason = f"The primary container for production variant {_variant(session, config)} did not pass the ping " \
                 f"health check. {exc}" if isinstance(exc, HostingError) else f"{type(exc).__name__}: {exc}"
        _post(routes_url, "failure", {"config": config, "reason": reason[:1024]})
        raise
    hosted.endpoint = name
    _watch(session, hosted, config)
    _register(session, hosted, config)
    if old:
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway may still send to the old one that long
        for container in old:
            _discard(container)
    return hosted


def _watch(session, hosted: Hosted, config: str) -> None:
    """The container's log and use to CloudWatch, as an instance's; trouble there leaves the hosting as it is."""
    try:
        ContainerWatch(session, hosted.endpoint, _variant(session, config), hosted.container, hosted.ready_s)
    except Exception as exc:  # noqa: BLE001 - observability never fails an endpoint
        log.warning("endpoint %s: no CloudWatch log or metrics for %s: %s", hosted.endpoint, hosted.container, exc)


def _variant(session, config: str) -> str:
    return session.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=config)["ProductionVariants"][0]["VariantName"]


def _outcome(session, name: str, config: str) -> Hosted:
    """The endpoint as another hoster left it: its container once in service; HostingError when it failed."""
    sagemaker = session.client("sagemaker")
    deadline = time.monotonic() + ping_timeout() + 120
    while time.monotonic() < deadline:
        described = sagemaker.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            break
        time.sleep(1)
    if described["EndpointStatus"] != "InService" or described["EndpointConfigName"] != config:
        raise HostingError(f"endpoint {name}: {described['EndpointStatus']} {described.get('FailureReason', '')}")
    answer = requests.get(_routes_url(session, name), timeout=10, auth=RootAuth())  # what the gateway uses
    if answer.status_code != 200:
        raise HostingError(f"endpoint {name} is in service on {config}, but has no route: {answer.status_code}")
    entry = answer.json()
    return Hosted(name, entry.get("container", ""), entry["url"], entry["url"], 0.0)


def _discard(container: dict) -> None:
    remove(container["name"])
    folder = container["labels"].get(DIR_LABEL)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def unhost_endpoint(name: str, session) -> None:
    """Stop and remove the endpoint's containers and models, and drop its route."""
    try:
        requests.delete(_routes_url(session, name), timeout=10, auth=RootAuth())
    except requests.RequestException:  # the emulator is gone, and its routes with it
        pass
    if not engine_answers():  # no engine here (native mode): no endpoint container can be running
        return
    for container in _containers(name):
        _discard(container)


def main(argv: list[str] | None = None) -> int:
    """``python -m services.hosting.endpoints route ENDPOINT URL``: route the endpoint (on the emulator at
    ``AWS_ENDPOINT_URL``, region ``AWS_DEFAULT_REGION``) to the model server at URL, as the gateway reaches it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m services.hosting.endpoints", description=main.__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    route = steps.add_parser("route", help="route an endpoint's InvokeEndpoint to a running model server")
    route.add_argument("endpoint")
    route.add_argument("url")
    args = parser.parse_args(argv)
    import boto3

    routes_url = settings.routes_url(settings.emulator_url(), os.environ.get("AWS_DEFAULT_REGION") or settings.REGION,
                                     args.endpoint)
    config = boto3.client("sagemaker").describe_endpoint(EndpointName=args.endpoint)["EndpointConfigName"]
    claim(routes_url, config)  # the route is this server whoever else asked: the stack's own endpoint
    register_route(routes_url, args.url, config=config)
    print(f"{args.endpoint} -> {args.url}")
    return 0


def hosted_endpoints() -> list[str]:
    """The endpoints that have containers on this Docker engine."""
    names = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.Label "{LABEL}"}}}}').stdout
    return sorted(set(names.split()))


if __name__ == "__main__":
    raise SystemExit(main())
