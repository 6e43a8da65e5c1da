"""A model server in a container, as SageMaker runs one (contracts §A.1): the model's image (by digest, pulled
when this engine lacks it), its model directory mounted read-only at ``/opt/ml/model``, ``serve``, healthy once
``/ping`` answers 200 (within ``DOGOPS_HOSTING_TIMEOUT``, SageMaker's 240 s by default); SIGTERM then, after 30 s,
SIGKILL when it is replaced. Natively on host networking and a free 127.0.0.1 port; in compose on the stack's
network, or in the gateway's network namespace (``container:<gateway>``, as compose's ``serving`` sidecar: the
gateway and the samples URL are the model's loopback; the host cannot reach it, so the engine's own health
check asks ``/ping`` inside). Used by hosting (``endpoints``), the stack's training runner (``docker``) and ``promote preflight``."""

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from training.archive import ArchiveError, extract

ROUTE_LABEL = "dogops.route"
HEALTH_LABEL = "dogops.health"  # "engine": the engine's health check answers for /ping (a namespace the host can't reach)
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


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/ping", timeout=2).status_code == 200  # SageMaker's ping timeout
    except requests.RequestException:
        return False


def container_healthy(container: str, url: str, labels: dict) -> bool:
    """``/ping`` answers 200: asked at ``url``, or by the engine's health check for a container that the host
    cannot reach (label ``dogops.health=engine``)."""
    if labels.get(HEALTH_LABEL) != "engine":
        return healthy(url)
    result = docker("inspect", "--format", "{{.State.Health.Status}}", container, check=False)
    return result.stdout.strip() == "healthy"


def _health_check(port: int) -> list[str]:
    """The engine asks ``/ping`` every second inside the container (SageMaker's 2 s timeout per ping)."""
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/ping', timeout=2)"
    return ["--health-cmd", f'python3 -c "{probe}"', "--health-interval", "1s", "--health-timeout", "3s",
            "--health-retries", "3", "--health-start-period", f"{ping_timeout():.0f}s"]


def remove(container: str) -> None:
    docker("stop", "-t", str(STOP_GRACE), container, check=False, timeout=STOP_GRACE + 30)
    docker("rm", "-f", container, check=False)


def pull_missing(image: str) -> None:
    """Pull ``image`` unless this engine has it (SageMaker pulls before it starts a container)."""
    if docker("image", "inspect", image, check=False).returncode != 0:
        docker("pull", image, timeout=1800)


def run_model(image: str, model_dir: Path, name: str, network: str | None = None, env: dict | None = None,
              labels: dict | None = None, port: int = PORT) -> Hosted:
    """``docker run -d <image> serve`` with ``model_dir`` at ``/opt/ml/model`` read-only, named ``name``; wait for
    ``/ping``. ``network`` None: host networking on a free 127.0.0.1 port; ``container:<id>``: that container's
    network namespace, on ``port`` (the engine checks ``/ping``); else that network, port 8080 published on
    127.0.0.1. Raises ``HostingError`` with the container's log (and removes it) when it never gets healthy."""
    pull_missing(image)
    args = ["run", "-d", "--name", name, "-v", f"{Path(model_dir).absolute()}:/opt/ml/model:ro"]
    env = dict(env or {})
    labels = dict(labels or {})
    if network is None:
        port = free_port()
        route = f"http://127.0.0.1:{port}"
        args += ["--network", "host"]
        env.update(SAGEMAKER_BIND_TO_PORT=str(port), DOGOPS_BIND_HOST="127.0.0.1")
    elif network.startswith("container:"):
        route = f"http://127.0.0.1:{port}"
        args += ["--network", network, *_health_check(port)]
        env.update(SAGEMAKER_BIND_TO_PORT=str(port), DOGOPS_BIND_HOST="127.0.0.1")
        labels[HEALTH_LABEL] = "engine"
    else:
        route = f"http://{name}:{PORT}"
        args += ["--network", network, "-p", f"127.0.0.1::{PORT}"]
    labels[ROUTE_LABEL] = route
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    started = time.monotonic()
    docker(*args, image, "serve")
    url = route if network is None or network.startswith("container:") else published_url(name)
    deadline = started + ping_timeout()
    while not container_healthy(name, url, labels):
        running = _running(name)
        if not running or time.monotonic() > deadline:
            why = "exited" if not running else f"did not answer /ping with 200 within {ping_timeout():.0f} s"
            tail = _logs(name)
            docker("rm", "-f", name, check=False)
            raise HostingError(f"the model container {name} ({image}) {why}; the end of its log:\n{tail}")
        time.sleep(0.5)
    return Hosted(endpoint=name, container=name, url=url, route=route,
                  ready_s=round(time.monotonic() - started, 2))


def published_url(container: str) -> str:
    """The host's URL of a container's port 8080 (published on 127.0.0.1)."""
    address = docker("port", container, f"{PORT}/tcp").stdout.split()[0]
    return f"http://{address}"


def engine_answers() -> bool:
    """Whether a Docker engine answers this machine's ``docker`` command."""
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):  # no docker command, or an engine that does not answer
        return False
