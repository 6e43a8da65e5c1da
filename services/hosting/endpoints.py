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
``DOGOPS_HOSTING_NETWORK`` overrides the choice (a network name, or ``host`` for native).

Containers carry the label ``dogops.endpoint=<name>``; each model is extracted under ``DOGOPS_HOSTING_DIR``
(default ``<tmp>/dogops-hosting``) and removed with its container.
"""

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import requests

from ..security.sigv4 import RootAuth
from ..stack import settings
from .containers import (
    ROUTE_LABEL,
    Hosted,
    HostingError,
    docker,
    engine_answers,
    extract_model,
    healthy,
    published_url,
    remove,
    run_model,
)

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


def _fetch_allow(network: str | None) -> str:
    """Where the model may fetch photos by URL: the stack's gateway (its ``/samples``)."""
    return f"gateway:{settings.GATEWAY_PORT}" if network else urlparse(settings.gateway_url()).netloc


def _containers(endpoint: str) -> list[dict]:
    """The endpoint's containers: name, labels, running."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={endpoint}").stdout.split()
    if not ids:
        return []
    return [{"name": c["Name"].lstrip("/"), "labels": c["Config"]["Labels"] or {}, "running": c["State"]["Running"]}
            for c in json.loads(docker("inspect", *ids).stdout)]


def _routes_url(session, endpoint: str) -> str:
    sagemaker = session.client("sagemaker")
    return settings.routes_url(sagemaker.meta.endpoint_url, sagemaker.meta.region_name or settings.REGION, endpoint)


def register_route(routes_url: str, url: str, container: str = "") -> None:
    """Route ``InvokeEndpoint`` for an endpoint to the model server at ``url``: ``routes_url`` is its entry in the
    emulator's route table (``<emulator>/_dogops/hosting/<region>/<endpoint>``)."""
    answer = requests.put(routes_url, timeout=10, auth=RootAuth(), json={"url": url, "container": container})
    if answer.status_code != 200:
        raise HostingError(f"the emulator did not take the route {routes_url}: {answer.status_code} "
                           f"{answer.text[:500]}")


def _register(session, hosted: Hosted) -> None:
    register_route(_routes_url(session, hosted.endpoint), hosted.route, hosted.container)


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


def host_endpoint(name: str, session) -> Hosted:
    """Serve endpoint ``name`` (on the emulator ``session`` points at) from a container, and route the
    gateway's ``InvokeEndpoint`` there. Already serving its current config: nothing changes. After an update:
    the new container first, then the route, then the old one goes (no downtime)."""
    config, definition = _model_of(session, name)
    old = _containers(name)
    for container in old:
        labels = container["labels"]
        if container["running"] and labels.get(CONFIG_LABEL) == config:
            route = labels[ROUTE_LABEL]
            url = route if route.startswith("http://127.0.0.1:") else published_url(container["name"])
            if healthy(url):
                hosted = Hosted(name, container["name"], url, route, 0.0)
                _register(session, hosted)
                for other in old:
                    if other is not container:
                        _discard(other)
                return hosted
    container = f"dogops-endpoint-{name}-{uuid.uuid4().hex[:8]}"
    model_dir = hosting_dir() / container
    try:
        _download(session, definition["ModelDataUrl"], model_dir)
        network = hosting_network()
        env = {**(definition.get("Environment") or {}), "DOGOPS_FETCH_ALLOW": _fetch_allow(network)}
        hosted = run_model(definition["Image"], model_dir, container, network, env,
                           {LABEL: name, CONFIG_LABEL: config, DIR_LABEL: str(model_dir)})
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    hosted.endpoint = name
    _register(session, hosted)
    if old:
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway may still send to the old one that long
        for container in old:
            _discard(container)
    return hosted


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
    register_route(settings.routes_url(settings.emulator_url(), os.environ.get("AWS_DEFAULT_REGION") or settings.REGION,
                              args.endpoint), args.url)
    print(f"{args.endpoint} -> {args.url}")
    return 0


def hosted_endpoints() -> list[str]:
    """The endpoints that have containers on this Docker engine."""
    names = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.Label "{LABEL}"}}}}').stdout
    return sorted(set(names.split()))


if __name__ == "__main__":
    raise SystemExit(main())
