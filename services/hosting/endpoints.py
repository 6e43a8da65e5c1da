"""SageMaker hosting on the local stack: an endpoint created through the API or CloudFormation is served by its
own container, run as SageMaker runs it (contracts §A.1): the model's image (by digest, pulled from the registry
the emulator's ECR names), its ``model.tar.gz`` extracted at ``/opt/ml/model`` read-only, ``serve``, healthy once
``/ping`` answers 200. No AWS credentials go in: the model is mounted.

The gateway finds the container through the emulator's route table (``services.emulator.sagemaker_endpoints``): ``InvokeEndpoint``
for a hosted endpoint goes there, any other endpoint to the stack's own serving.

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
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from training.archive import ArchiveError, extract

from ..security.sigv4 import RootAuth
from ..stack import settings

LABEL = "dogops.endpoint"
CONFIG_LABEL = "dogops.endpoint-config"
DIR_LABEL = "dogops.model-dir"
ROUTE_LABEL = "dogops.route"
PORT = 8080  # the container's port (SAGEMAKER_BIND_TO_PORT's default)
STOP_GRACE = 30  # s: SageMaker's SIGTERM-to-SIGKILL on replacement
LOG_TAIL = 40  # lines of the container's log in an error


def ping_timeout() -> float:
    """Seconds from ``docker run`` to a healthy ``/ping`` (``DOGOPS_HOSTING_TIMEOUT``, SageMaker's 240 s)."""
    return float(os.environ.get("DOGOPS_HOSTING_TIMEOUT") or 240)


class HostingError(RuntimeError):
    """The endpoint could not be hosted; the message says why (with the container's log when it ran)."""


@dataclass
class Hosted:
    endpoint: str
    container: str
    url: str  # reachable from the host (127.0.0.1:port)
    route: str  # what the gateway uses (the same natively; the container's DNS name in compose)
    ready_s: float  # docker run -> first /ping 200, seconds


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise HostingError(f"docker {' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def extract_model(model_tar: Path, into: Path) -> Path:
    """Unpack a ``model.tar.gz`` into ``into`` as SageMaker does, through ``training.archive`` (nothing may land
    outside ``into``: no absolute names, ``..``, links or special files; size and member count capped)."""
    try:
        return extract(model_tar, into)
    except ArchiveError as exc:
        raise HostingError(f"{model_tar}: {exc}") from None


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _logs(container: str) -> str:
    result = docker("logs", "--tail", str(LOG_TAIL), container, check=False)
    return (result.stdout + result.stderr).strip()


def _running(container: str) -> bool:
    result = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
    return result.stdout.strip() == "true"


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/ping", timeout=2).status_code == 200  # SageMaker's ping timeout
    except requests.RequestException:
        return False


def _remove(container: str) -> None:
    docker("stop", "-t", str(STOP_GRACE), container, check=False, timeout=STOP_GRACE + 30)
    docker("rm", "-f", container, check=False)


def pull_missing(image: str) -> None:
    """Pull ``image`` unless this engine has it (SageMaker pulls before it starts a container)."""
    if docker("image", "inspect", image, check=False).returncode != 0:
        docker("pull", image, timeout=1800)


def run_model(image: str, model_dir: Path, name: str, network: str | None = None, env: dict | None = None,
              labels: dict | None = None) -> Hosted:
    """``docker run -d <image> serve`` with ``model_dir`` at ``/opt/ml/model`` read-only, named ``name``; wait for
    ``/ping``. ``network`` None: host networking on a free 127.0.0.1 port; else that network, port 8080 published
    on 127.0.0.1. Raises ``HostingError`` with the container's log (and removes it) when it never gets healthy."""
    pull_missing(image)
    args = ["run", "-d", "--name", name, "-v", f"{Path(model_dir).absolute()}:/opt/ml/model:ro"]
    env = dict(env or {})
    if network is None:
        port = free_port()
        route = f"http://127.0.0.1:{port}"
        args += ["--network", "host"]
        env.update(SAGEMAKER_BIND_TO_PORT=str(port), DOGOPS_BIND_HOST="127.0.0.1")
    else:
        route = f"http://{name}:{PORT}"
        args += ["--network", network, "-p", f"127.0.0.1::{PORT}"]
    labels = {**(labels or {}), ROUTE_LABEL: route}
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    started = time.monotonic()
    docker(*args, image, "serve")
    url = route if network is None else published_url(name)
    deadline = started + ping_timeout()
    while not _healthy(url):
        running = _running(name)
        if not running or time.monotonic() > deadline:
            why = "exited" if not running else f"did not answer /ping with 200 within {ping_timeout():.0f} s"
            tail = _logs(name)
            docker("rm", "-f", name, check=False)
            raise HostingError(f"the model container {name} ({image}) {why}; the end of its log:\n{tail}")
        time.sleep(0.5)
    return Hosted(endpoint=(labels.get(LABEL) or name), container=name, url=url, route=route,
                  ready_s=round(time.monotonic() - started, 2))


def published_url(container: str) -> str:
    """The host's URL of a container's port 8080 (published on 127.0.0.1)."""
    address = docker("port", container, f"{PORT}/tcp").stdout.split()[0]
    return f"http://{address}"


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
    region = sagemaker.meta.region_name or settings.REGION
    return f"{sagemaker.meta.endpoint_url}{settings.HOSTING_ROUTES}/{region}/{endpoint}"


def _register(session, hosted: Hosted) -> None:
    answer = requests.put(_routes_url(session, hosted.endpoint), timeout=10, auth=RootAuth(),
                          json={"url": hosted.route, "container": hosted.container})
    if answer.status_code != 200:
        raise HostingError(f"the emulator did not take the route of {hosted.endpoint}: {answer.status_code} "
                           f"{answer.text[:500]}")


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
            if _healthy(url):
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
    _remove(container["name"])
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


def engine_answers() -> bool:
    """Whether a Docker engine answers this machine's ``docker`` command."""
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):  # no docker command, or an engine that does not answer
        return False


def hosted_endpoints() -> list[str]:
    """The endpoints that have containers on this Docker engine."""
    names = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.Label "{LABEL}"}}}}').stdout
    return sorted(set(names.split()))
