"""Native SageMaker hosting: every production variant of an endpoint served by its own ``serve`` process.

The emulator (``services.emulator.sagemaker_endpoints``) calls :func:`reconcile` whenever an endpoint is created
or updated (boto3, an SDK, a CloudFormation stack: all end in moto's backend) and :func:`remove` when it is
deleted. Here, in a thread of the emulator, like the training runner:

- each variant's ``ModelDataUrl`` is read from the emulator's S3 (``Variant.fetch``) and unpacked safely under
  ``<DOGOPS_HOSTING_DIR>/<endpoint>-<id>/<variant>/model``; ``serve`` (the serving image's own program) runs
  there with the model's ``Environment``, bound to 127.0.0.1 on a free port, its log beside it. It gets no AWS
  credentials: the model is on disk;
- the endpoint is ``Creating`` (``Updating``) until every variant's ``/ping`` answers 200, then its routes are
  published (``Publish``: the emulator's route table the gateway reads) and it is ``InService``;
- a variant that cannot start (missing or unsafe archive, ``serve`` exits, no 200 within
  ``DOGOPS_HOSTING_TIMEOUT`` seconds, default 240 as SageMaker) makes a new endpoint ``Failed``, with AWS's FailureReason and
  the last error line of the server's log; a failed update leaves the old servers serving (``InService`` on the
  old config, with the reason), as SageMaker rolls back;
- an update starts the new servers first, switches the routes, and stops the old ones once the gateway can no
  longer be using them (no downtime); a delete stops the servers (SIGTERM, SIGKILL after 30 s, as SageMaker
  stops a container) and removes their files;
- a server that exits while its endpoint is in service is replaced by a new one on the same model, as SageMaker
  replaces a failed instance;
- a variant runs ``InitialInstanceCount`` servers, each an instance; :func:`scale` changes how many
  (``UpdateEndpointWeightsAndCapacities`` and the emulator's auto-scaling, ``services.emulator.autoscaling``): new
  servers join the routes once they answer ``/ping``, removed ones leave the routes first and stop once the
  gateway can no longer be using them. The gateway spreads a variant's requests over its servers in turn.
- each server is an instance to CloudWatch (``services.observability.instances``): its log in
  ``/aws/sagemaker/Endpoints/<endpoint>``, stream ``<variant>/<instance id>``, from its first line; its CPU, memory
  and disk use sampled; the time it took to answer ``/ping`` as ``ModelSetupTime``.

``SAGEMAKER_MODEL_SERVER_WORKERS`` (default 1 per variant) sizes each server unless the model's ``Environment``
sets it. The emulator's exit stops every server.
"""

import atexit
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from ..observability.instances import InstanceWatch
from ..stack import settings
from .containers import HostingError, extract_model, free_port, healthy, ping_timeout

log = logging.getLogger(__name__)

SERVE = Path(sys.executable).parent / "serve"
STOP_GRACE_S = 30  # SageMaker stops a model container with SIGTERM, then SIGKILL after 30 s
MAX_REASON = 1024
WATCH_S = 1.0  # how often a hosted endpoint's servers are checked

Report = Callable[..., None]  # report(status, failure_reason=None, rolled_back=False)
Publish = Callable[[dict[str, list[str]] | None], None]  # publish({variant: [url, ...]}) or None: drop the routes
Scaled = Callable[[int], None]  # scaled(count): the variant now serves on that many servers


@dataclasses.dataclass(frozen=True)
class Variant:
    """One production variant as the emulator describes it: its model's container definition."""

    name: str
    model: str
    model_data_url: str  # "" when the model names none
    environment: dict[str, str]
    fetch: Callable[[str, Path], None]  # fetch(s3 url, archive path): the object, from the emulator's S3
    instances: int = 1  # InitialInstanceCount


@dataclasses.dataclass
class Server:
    """A running ``serve`` for one variant."""

    spec: Variant
    folder: Path
    proc: subprocess.Popen
    url: str
    watch: InstanceWatch | None = None  # its log and use in CloudWatch, as an instance's

    @property
    def variant(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path:
        return self.folder / "serve.log"


@dataclasses.dataclass
class _Hosted:
    """An endpoint's servers, and the generation of the request that put them there."""

    servers: list[Server] = dataclasses.field(default_factory=list)
    generation: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


_endpoints: dict[tuple, _Hosted] = {}
_table_lock = threading.Lock()


class VariantFailed(Exception):
    """A variant's server did not come up: the endpoint's FailureReason."""


def hosting_dir() -> Path:
    return Path(os.environ.get("DOGOPS_HOSTING_DIR") or Path(tempfile.gettempdir()) / "dogops-hosting")


def _entry(key: tuple) -> _Hosted:
    with _table_lock:
        return _endpoints.setdefault(key, _Hosted())


def reconcile(key: tuple, variants: list[Variant], report: Report, publish: Publish, updating: bool) -> None:
    """Bring endpoint ``key`` (account, region, name) to ``variants`` in a thread; it reports its status."""
    hosted = _entry(key)
    with _table_lock:
        hosted.generation += 1
        generation = hosted.generation
    threading.Thread(target=_reconcile, args=(key, hosted, generation, variants, report, publish, updating),
                     name=f"hosting-{key[-1]}", daemon=True).start()


def remove(key: tuple, publish: Publish) -> None:
    """Endpoint ``key`` is deleted: drop its routes, stop its servers and remove their files (in a thread)."""
    with _table_lock:
        hosted = _endpoints.pop(key, None)
    publish(None)
    if hosted is not None:
        with _table_lock:
            hosted.generation += 1  # a start under way gives up
        threading.Thread(target=_stop_all_of, args=(hosted,), name=f"hosting-delete-{key[-1]}", daemon=True).start()


def servers(key: tuple) -> list[Server]:
    """The servers of endpoint ``key`` now (for tests and ``dogops status``)."""
    with _table_lock:
        hosted = _endpoints.get(key)
    return list(hosted.servers) if hosted else []


def _stop_all_of(hosted: _Hosted) -> None:
    with hosted.lock:
        old, hosted.servers = hosted.servers, []
    for server in old:
        stop(server)


def _reconcile(key, hosted: _Hosted, generation: int, variants: list[Variant], report: Report,
               publish: Publish, updating: bool) -> None:
    with hosted.lock:
        if hosted.generation != generation:  # a later update or a delete came first
            return
        started: list[Server] = []
        try:
            folder = hosting_dir() / f"{key[-1]}-{uuid.uuid4().hex[:8]}"
            for variant in variants:
                for number in range(max(1, variant.instances)):
                    place = folder / (variant.name if number == 0 else f"{variant.name}-{uuid.uuid4().hex[:8]}")
                    started.append(_observed(key, start(variant, place)))
            for server in started:
                wait_ready(server, server.spec, lambda: hosted.generation != generation)
        except VariantFailed as failed:
            for server in started:
                stop(server)
            if hosted.generation == generation:
                log.warning("endpoint %s: %s", key[-1], failed)
                rolled_back = updating and bool(hosted.servers)  # the old servers keep serving, watched again
                report("InService" if rolled_back else "Failed", str(failed)[:MAX_REASON], rolled_back=rolled_back)
                if rolled_back:
                    threading.Thread(target=_watch, args=(hosted, generation, publish), daemon=True).start()
            return
        except BaseException:
            for server in started:
                stop(server)
            raise
        if hosted.generation != generation:
            for server in started:
                stop(server)
            return
        old, hosted.servers = hosted.servers, started
        publish(routes(started))
        report("InService")
        threading.Thread(target=_watch, args=(hosted, generation, publish), name=f"hosting-watch-{key[-1]}",
                         daemon=True).start()
    if old:
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway may still send to the old ones that long
        for server in old:
            stop(server)


def _watch(hosted: _Hosted, generation: int, publish: Publish) -> None:
    """While the endpoint stays as it is: a server that exits is replaced by a new one on the same model, as
    SageMaker replaces a failed instance (the variant answers ModelError meanwhile)."""
    while True:
        time.sleep(WATCH_S)
        with hosted.lock:
            if hosted.generation != generation:
                return
            for index, server in enumerate(hosted.servers):
                if server.proc.poll() is None:
                    continue
                log.warning("variant %s: serve pid %d exited with %s; starting another", server.variant,
                            server.proc.pid, server.proc.returncode)
                stop(server)
                try:
                    hosted.servers[index] = replacement = start(server.spec, server.folder)
                    replacement.watch = server.watch and server.watch.renewed(replacement.proc.pid)
                    wait_ready(replacement, server.spec, lambda: hosted.generation != generation)
                except VariantFailed as failed:
                    log.warning("variant %s: %s", server.variant, failed)
                    continue  # tried again on the next round
                if hosted.generation == generation:
                    publish(routes(hosted.servers))


def routes(running: list[Server]) -> dict[str, list[str]]:
    """Each variant's servers' URLs, in the order they started."""
    found: dict[str, list[str]] = {}
    for server in running:
        found.setdefault(server.variant, []).append(server.url)
    return found


def scale(key: tuple, variant: str, count: int, publish: Publish, scaled: Scaled) -> None:
    """Bring ``variant`` of endpoint ``key`` to ``count`` servers (at least one), in a thread; ``scaled(n)`` then
    says how many serve (fewer than asked when a new one did not start: the others keep serving)."""
    with _table_lock:
        hosted = _endpoints.get(key)
    if hosted is None:
        scaled(0)
        return
    threading.Thread(target=_scale, args=(key, hosted, variant, max(1, count), publish, scaled),
                     name=f"hosting-scale-{key[-1]}", daemon=True).start()


def _scale(key: tuple, hosted: _Hosted, variant: str, count: int, publish: Publish, scaled: Scaled) -> None:
    with hosted.lock:
        generation = hosted.generation
        mine = [server for server in hosted.servers if server.variant == variant]
        if not mine:  # not in service (failed, or rolled to a config without the variant)
            scaled(0)
            return
        added: list[Server] = []
        try:
            for _ in range(count - len(mine)):
                place = mine[0].folder.parent / f"{variant}-{uuid.uuid4().hex[:8]}"
                added.append(_observed(key, start(mine[0].spec, place)))
            for server in added:
                wait_ready(server, server.spec, lambda: hosted.generation != generation)
        except VariantFailed as failed:
            log.warning("variant %s: a new instance did not start: %s", variant, failed)
            for server in added:
                stop(server)
            added = []
        if hosted.generation != generation:  # updated or deleted meanwhile: those servers are gone
            for server in added:
                stop(server)
            return
        retired = mine[count:]
        hosted.servers = [server for server in hosted.servers if server not in retired] + added
        publish(routes(hosted.servers))
        scaled(len(mine) - len(retired) + len(added))
    if retired:
        time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # the gateway may still send to them that long
        for server in retired:
            stop(server)


def start(variant: Variant, folder: Path) -> Server:
    """Unpack the variant's model under ``folder`` and start its ``serve`` (not waited for)."""
    model_dir = folder / "model"
    if variant.model_data_url:
        _unpack(variant, variant.model_data_url, folder, model_dir)
    else:
        model_dir.mkdir(parents=True)
    environment = dict(variant.environment)
    source = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if source.startswith("s3://"):  # the server has no credentials: its code is fetched for it, as its model
        _unpack(variant, source, folder, folder / "code")
        environment["SAGEMAKER_SUBMIT_DIRECTORY"] = str(folder / "code")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "AWS_", "DOGOPS_"))}
    env.update(SAGEMAKER_MODEL_SERVER_WORKERS=os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1"))
    env.update(environment)
    env.update(SAGEMAKER_BASE_DIR=str(folder), SAGEMAKER_BIND_TO_PORT=str(port), DOGOPS_BIND_HOST="127.0.0.1",
               DOGOPS_FETCH_ALLOW=urlparse(settings.gateway_url()).netloc, TMPDIR=str(folder))
    if not SERVE.exists():
        raise VariantFailed(f"The primary container for production variant {variant.name} did not pass the ping "
                            f"health check: no serving runtime here ({SERVE} is missing; install the serve extra)")
    with open(folder / "serve.log", "ab") as out:
        proc = subprocess.Popen([str(SERVE)], env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _started.add(proc)
    log.info("variant %s (model %s): serve pid %d on 127.0.0.1:%d", variant.name, variant.model, proc.pid, port)
    return Server(variant, folder, proc, f"http://127.0.0.1:{port}")


def _observed(key: tuple, server: Server) -> Server:
    """``server`` with its log followed into CloudWatch Logs and its use sampled, as endpoint ``key``'s instance."""
    server.watch = InstanceWatch(key[1], key[-1], server.variant, server.log_path, server.proc.pid, server.folder)
    return server


def _unpack(variant: Variant, url: str, folder: Path, into: Path) -> None:
    """The archive at ``url`` (a model, or an s3 ``SAGEMAKER_SUBMIT_DIRECTORY``) unpacked safely into ``into``."""
    parsed = urlparse(url)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "archive.tar.gz"
    try:
        if parsed.scheme != "s3" or not parsed.netloc:
            raise FileNotFoundError(url)
        variant.fetch(url, archive)
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        raise VariantFailed(f"Could not find model data at {url}.") from None
    try:
        extract_model(archive, into)
    except HostingError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise VariantFailed(f'Failed to extract model data archive from URL "{url}". Please ensure that the object '
                            f"located at the URL is a valid tar.gz archive. ({exc})") from None
    finally:
        archive.unlink(missing_ok=True)


def wait_ready(server: Server, variant: Variant, given_up: Callable[[], bool]) -> None:
    """Until the server's ``/ping`` answers 200; VariantFailed when it exits or times out."""
    deadline = time.monotonic() + ping_timeout()
    while not given_up():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise VariantFailed(f"The primary container for production variant {variant.name} did not pass the "
                                f"ping health check. Please check CloudWatch logs for this endpoint. "
                                f"{last_error(server.log_path)}".rstrip())
        if healthy(server.url):
            if server.watch:
                server.watch.ready()
            return
        time.sleep(0.2)


def last_error(log_path: Path) -> str:
    """The last line of the log that says what went wrong (else its last line)."""
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    except FileNotFoundError:
        return ""
    errors = [line for line in lines if " ERROR " in line or "Error" in line or "error" in line]
    return (errors or lines or [""])[-1][-MAX_REASON // 2:]


def stop(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL after ``STOP_GRACE_S``; remove its files."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            server.proc.wait(STOP_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    _started.discard(server.proc)
    if server.watch:
        server.watch.stop()
    shutil.rmtree(server.folder, ignore_errors=True)
    parent = server.folder.parent
    if parent.exists() and not any(parent.iterdir()):
        parent.rmdir()


_started: set[subprocess.Popen] = set()


@atexit.register
def _kill_all() -> None:
    for proc in list(_started):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
