"""SageMaker hosting on the local stack: an endpoint created through the API or CloudFormation is served by its
own containers, one per instance of its (first) variant (``containers``: the model's image, by digest, pulled from
the registry the emulator's ECR names), its ``model.tar.gz`` extracted at ``/opt/ml/model`` read-only. No AWS
credentials go in: the model is mounted. A new instance count adds or removes containers; the route names them
all (the gateway sends to each in turn) and the emulator counts them as ``CurrentInstanceCount``.

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

import dataclasses
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
    """The endpoint's containers (None: every endpoint's), oldest first: name, labels, running."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}" + (f"={endpoint}" if endpoint else "")).stdout.split()
    if not ids:
        return []
    found = sorted(json.loads(docker("inspect", *ids).stdout), key=lambda c: c["Created"])
    return [{"name": c["Name"].lstrip("/"), "labels": c["Config"]["Labels"] or {}, "running": c["State"]["Running"]}
            for c in found]


def _routes_url(session, endpoint: str) -> str:
    sagemaker = session.client("sagemaker")
    return settings.routes_url(sagemaker.meta.endpoint_url, sagemaker.meta.region_name or settings.REGION, endpoint)


def register_route(routes_url: str, url: str, container: str = "", config: str = "",
                   instances: dict[str, list[str]] | None = None) -> None:
    """Route ``InvokeEndpoint`` for an endpoint to the model server at ``url``: ``routes_url`` is its entry in the
    emulator's route table (``<emulator>/_dogops/hosting/<region>/<endpoint>``); ``config``: the endpoint config
    it serves (the endpoint is then in service); ``instances``: a variant's servers, each an instance (the
    gateway sends to each in turn; ``CurrentInstanceCount`` is how many)."""
    body = {"url": url, "container": container, "config": config, **({"instances": instances} if instances else {})}
    answer = requests.put(routes_url, timeout=10, auth=RootAuth(), json=body)
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


@dataclasses.dataclass(frozen=True)
class _Target:
    """What the endpoint is to run: its config, its first variant's name and instance count (``DesiredInstanceCount``,
    else ``InitialInstanceCount``), and that variant's model's container definition (Image, ModelDataUrl, ...)."""

    config: str
    variant: str
    count: int
    definition: dict


def _target(session, endpoint: str) -> _Target:
    sagemaker = session.client("sagemaker")
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    config = described["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    now = next((v for v in described.get("ProductionVariants") or [] if v["VariantName"] == variant["VariantName"]),
               {})
    count = now.get("DesiredInstanceCount") or variant.get("InitialInstanceCount") or 1
    return _Target(config, variant["VariantName"], max(1, int(count)),
                   model.get("PrimaryContainer") or model["Containers"][0])


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


def host_endpoint(name: str, session, network: str | None = None, image_of=None) -> list[Hosted]:
    """Serve endpoint ``name`` (on the emulator ``session`` points at) from containers, one per instance of its
    variant, and route the gateway's ``InvokeEndpoint`` to them; the containers serving, in route order.

    Already serving its current config: its containers are brought to the variant's instance count (a new count
    from ``UpdateEndpointWeightsAndCapacities`` or auto-scaling: new ones first, then the route, then the removed
    ones go; one that does not start leaves the others serving, fewer than asked). After an update: the new
    containers first, then the route, then the old ones go (no downtime). ``network``: as ``run_model``'s (default
    ``hosting_network()``); ``image_of(uri)``: the local image for the model's image (default: itself). Another
    hoster that claimed this config first: its outcome, waited for."""
    target = _target(session, name)
    old = _containers(name)
    serving = [c for c in old if c["running"] and c["labels"].get(CONFIG_LABEL) == target.config]
    serving = [hosted for hosted in map(_serving, serving) if hosted is not None]
    if serving:
        return _scale(session, name, target, serving, old, network, image_of)
    routes_url = _routes_url(session, name)
    if not claim(routes_url, target.config):
        return _outcome(session, name, target.config)
    started: list[Hosted] = []
    try:
        for _ in range(target.count):
            started.append(_start(session, name, target, network, image_of, like=started[0] if started else None))
    except BaseException as exc:
        for hosted in started:
            _discard(hosted.container, str(hosting_dir() / hosted.container))
        reason = f"The primary container for production variant {target.variant} did not pass the ping health " \
                 f"check. {exc}" if isinstance(exc, HostingError) else f"{type(exc).__name__}: {exc}"
        _post(routes_url, "failure", {"config": target.config, "reason": reason[:1024]})
        raise
    _route(session, name, target, started)
    _retire(old)
    return started


def _scale(session, name: str, target: _Target, serving: list[Hosted], old: list[dict], network,
           image_of) -> list[Hosted]:
    """The endpoint's containers on its config brought to ``target.count``, routed; every other one retired."""
    kept = serving[:target.count]
    for _ in range(target.count - len(kept)):
        try:
            kept.append(_start(session, name, target, network, image_of, like=serving[0]))
        except (HostingError, OSError) as exc:
            log.warning("endpoint %s: a new instance did not start: %s", name, exc)
            break
    _route(session, name, target, kept)
    _retire([c for c in old if c["name"] not in {hosted.container for hosted in kept}])
    return kept


def _serving(container: dict) -> Hosted | None:
    """A running container of the endpoint as a ``Hosted``, when it answers ``/ping``."""
    labels = container["labels"]
    route = labels[ROUTE_LABEL]
    url = route if route.startswith("http://127.0.0.1:") else published_url(container["name"])
    if not container_healthy(container["name"], url, labels):
        return None
    return Hosted(labels[LABEL], container["name"], url, route, 0.0)


def _start(session, name: str, target: _Target, network: str | None, image_of, like: Hosted | None) -> Hosted:
    """One more container (instance) for the endpoint's variant, its log and use watched: its model from S3, or
    copied from ``like``'s (a serving instance's, on this machine already)."""
    container = f"dogops-endpoint-{name}-{uuid.uuid4().hex[:8]}"
    model_dir = hosting_dir() / container
    try:
        if like is not None:
            shutil.copytree(_model_dir(like.container), model_dir, symlinks=True)
        else:
            _download(session, target.definition["ModelDataUrl"], model_dir)
        network = network or hosting_network()
        env = {**(target.definition.get("Environment") or {}), "DOGOPS_FETCH_ALLOW": _fetch_allow(network)}
        image = image_of(target.definition["Image"]) if image_of else target.definition["Image"]
        port = _namespace_port() if network and network.startswith("container:") else 8080
        hosted = run_model(image, model_dir, container, network, env,
                           {LABEL: name, CONFIG_LABEL: target.config, DIR_LABEL: str(model_dir)}, port)
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    hosted.endpoint = name
    _watch(session, hosted, target.variant)
    return hosted


def _model_dir(container: str) -> Path:
    labels = docker("inspect", "--format", "{{json .Config.Labels}}", container).stdout
    return Path(json.loads(labels)[DIR_LABEL])


def _route(session, name: str, target: _Target, hosted: list[Hosted]) -> None:
    """The gateway's route to ``hosted`` (the variant's instances), naming the config: the endpoint is in service."""
    register_route(_routes_url(session, name), hosted[0].route, hosted[0].container, target.config,
                   {target.variant: [h.route for h in hosted]})


def _retire(containers: list[dict]) -> None:
    """Stop and remove ``containers`` once the gateway can no longer be using them."""
    if containers:
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway may still send to them that long
    for container in containers:
        _discard(container["name"], container["labels"].get(DIR_LABEL))


def _watch(session, hosted: Hosted, variant: str) -> None:
    """The container's log and use to CloudWatch, as an instance's; trouble there leaves the hosting as it is."""
    try:
        ContainerWatch(session, hosted.endpoint, variant, hosted.container, hosted.ready_s)
    except Exception as exc:  # noqa: BLE001 - observability never fails an endpoint
        log.warning("endpoint %s: no CloudWatch log or metrics for %s: %s", hosted.endpoint, hosted.container, exc)


def _outcome(session, name: str, config: str) -> list[Hosted]:
    """The endpoint as another hoster left it: its instances once in service; HostingError when it failed. The
    outcome is the first change after the one seen first (its ``LastModifiedTime``), so a new count right after it
    (``Updating`` again) is no wait."""
    sagemaker = session.client("sagemaker")
    deadline = time.monotonic() + ping_timeout() + 120
    first, settled = None, False
    while not settled and time.monotonic() < deadline:
        described = sagemaker.describe_endpoint(EndpointName=name)
        settled = described["EndpointStatus"] not in ("Creating", "Updating") or (
            first is not None and described["LastModifiedTime"] != first)
        first = first or described["LastModifiedTime"]
        if not settled:
            time.sleep(1)
    if not settled or described["EndpointStatus"] not in ("InService", "Updating") \
            or described["EndpointConfigName"] != config:
        raise HostingError(f"endpoint {name}: {described['EndpointStatus']} {described.get('FailureReason', '')}")
    answer = requests.get(_routes_url(session, name), timeout=10, auth=RootAuth())  # what the gateway uses
    if answer.status_code != 200:
        raise HostingError(f"endpoint {name} is in service on {config}, but has no route: {answer.status_code}")
    entry = answer.json()
    urls = next(iter((entry.get("instances") or {}).values()), [entry["url"]])
    try:
        containers = {c["labels"].get(ROUTE_LABEL): c["name"] for c in _containers(name)}
    except (HostingError, OSError):  # no engine here: the route's own container name only
        containers = {}
    return [Hosted(name, containers.get(url, entry.get("container", "")), url, url, 0.0) for url in urls]


def _discard(container: str, folder: str | None) -> None:
    remove(container)
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
        _discard(container["name"], container["labels"].get(DIR_LABEL))


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
