"""``python -m services.stack.supervisor``: the native stack's parent process, which ``dogops up`` starts.

The compose stack's steps as host processes, in the same order: the emulator,
which hosts endpoints natively (``DOGOPS_HOSTING=native``: a ``serve`` per
variant, ``services.hosting.reconciler``); ``seed``, ``train`` and ``publish``
(skipping training when the model on disk was trained on the same data and
hyperparameters), whose ``CreateEndpoint`` makes the emulator host the stack's
endpoint like any other; once it is ``InService``, the gateway. While it runs
it restarts the gateway when it exits (with backoff; the emulator replaces a
dead ``serve`` itself), brings a dead emulator back at once (it restores its
state from ``emulator/`` and hosts its endpoints again; the gateway renews what
it held from the old one, seeing its ``boot_id`` change), and keeps ``state.json`` current (each pid with its start time, the stack
endpoint's ``serve`` as ``serving``, so ``dogops down`` never signals a later
process that reused one). SIGTERM or SIGINT stops every child: SIGTERM to its
process group, SIGKILL after a grace period.

    python -m services.stack.supervisor [--state-dir DIR] [--data DIR] [--retrain] [--fresh]

The state folder (``$DOGOPS_STATE_DIR``, default ``.dogops/stack``) holds
``state.json``, ``logs/<service>.log``, the emulator's journal ``emulator/``
(``--fresh`` removes it first), the SageMaker tree ``ml/``, the
gateway's ``samples/``, the feature cache and ``hosting/``: each hosted
variant's unpacked model and ``serve.log``. Every ``*.log`` there is kept under a size bound while the stack runs
(``logrotate``: ``DOGOPS_LOG_MAX_BYTES``, ``DOGOPS_LOG_BACKUPS``).
"""

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from . import logrotate, settings

log = logging.getLogger("supervisor")

SERVING_IMAGE = "dogops-serving:dev"  # recorded in the SageMaker model; natively, `serve` runs instead
BIN = Path(sys.executable).parent
GRACE = 10.0  # seconds between SIGTERM and SIGKILL
HEALTH_TIMEOUT = {"emulator": 60, "gateway": 60}
HOSTING_TIMEOUT = 300  # seconds from CreateEndpoint to InService for the stack's endpoint
RESTARTED = ("gateway",)
MAX_BACKOFF = 30.0
STABLE = 60.0  # a service up this long before it exits restarts without backoff


class BootstrapError(RuntimeError):
    """A start-up step failed; the message says which and where its log is."""


class Layout:
    """Where the native stack keeps its files."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root).absolute() if root else settings.state_dir()
        self.state = self.root / "state.json"
        self.logs = self.root / "logs"
        self.ml = self.root / "ml"
        self.samples = self.root / "samples"
        self.cache = self.root / "feature-cache"
        self.tmp = self.root / "tmp"
        self.hosting = self.root / "hosting"
        self.emulator = self.root / "emulator"  # the emulator's state (services.emulator.persistence)

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None


def service_urls() -> dict[str, str]:
    """Each service's health URL: the emulator's and the gateway's (the same ports in both modes), and the ``/ping``
    of the server that hosts the stack's endpoint (where the emulator's route table says; compose: ``serving``)."""
    return {"emulator": settings.emulator_url() + "/_dogops/health", "serving": endpoint_url() + "/ping",
            "gateway": settings.gateway_url() + "/_dogops/health"}


def endpoint_url() -> str:
    """Where the stack's endpoint is served: its route in the emulator, else ``settings.serving_url()``."""
    import requests

    from ..security.sigv4 import RootAuth

    try:
        answer = requests.get(settings.routes_url(settings.emulator_url(), settings.REGION, settings.ENDPOINT_NAME),
                              auth=RootAuth(), timeout=2)
        if answer.status_code == 200:
            return answer.json()["url"]
    except (requests.RequestException, ValueError, KeyError):
        pass
    return settings.serving_url()


def hosted_processes(root: Path, endpoint: str | None = None) -> list[int]:
    """The processes running in a hosted variant's folder under ``root`` (each ``serve`` and its workers), or only
    those of ``endpoint``'s."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(root) and (endpoint is None or re.fullmatch(f"{re.escape(endpoint)}-[0-9a-f]{{8}}",
                                                                          cwd.parent.name)):
            found.append(int(entry.name))
    return sorted(found)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (``/proc/<pid>/stat`` field 22, clock ticks after boot); None if there is none."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int | None, started: int | None) -> bool:
    """Whether ``pid`` is alive and still the process that started at ``started`` (not a later one given its pid)."""
    return started is not None and pid_alive(pid) and start_time(pid) == started


def live_in_groups(groups: set[int]) -> list[int]:
    """The processes, zombies aside, in the process groups ``groups`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:
                found.append(int(entry.name))
    return sorted(found)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (each child is started as one)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def base_env() -> dict[str, str]:
    """The caller's environment without SageMaker or AWS settings, plus the emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "AWS_"))}
    env.update(settings.emulator_env())
    return env


def model_is_current(ml: Path) -> bool:
    """Whether ``ml/model`` holds a whole model (every file as its manifest says) trained on ``ml``'s training
    channel with its hyperparameters. A model a crash left half-written is not: it is said, and trained again."""
    from training.artifact import ArtifactError, verify_artifact
    from training.dataset import open_dataset

    if not (ml / "model").is_dir() or not any((ml / "model").iterdir()):
        return False
    try:
        verify_artifact(ml / "model")
    except (ArtifactError, OSError, ValueError, KeyError) as exc:
        log.warning("not trusting the model on disk: %s; training it again", exc)
        return False
    try:
        metrics = json.loads((ml / "model" / "metrics.json").read_text(encoding="utf-8"))
        wanted = json.loads((ml / "input" / "config" / "hyperparameters.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    used = metrics.get("hyperparameters", {})
    if any(used.get(key) != str(value) for key, value in wanted.items()):
        return False
    return metrics.get("data_sha256") == open_dataset(ml / "input" / "data" / "training").content_hash()


class Child:
    """One service process, leader of its own process group, logging to ``logs/<name>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code once it has exited (its leftover group members are killed), else None."""
        code = self.proc.poll() if self.proc else None
        if code is not None:
            kill_group(self.proc.pid, signal.SIGKILL)
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = GRACE) -> None:
        if self.proc is None:
            return
        kill_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace)
        kill_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class Supervisor:
    """Starts the stack, keeps it up, stops it."""

    def __init__(self, layout: Layout, data: Path | None = None, retrain: bool = False, fresh: bool = False):
        self.layout, self.data, self.retrain, self.fresh = layout, data, retrain, fresh
        self.stopping = threading.Event()
        self.wake = threading.Event()  # set on SIGCHLD: a dead serve's orphaned workers go at once, as in a container
        self.started = time.monotonic()
        self.children: dict[str, Child] = {}
        self.state = {"mode": "native", "supervisor": os.getpid(), "phase": "starting", "error": None,
                      "started_at": time.time(), "ready_after_s": None, "state_dir": str(layout.root),
                      "ports": {"emulator": settings.EMULATOR_PORT, "gateway": settings.GATEWAY_PORT},
                      "urls": {"emulator": settings.emulator_url(), "gateway": settings.gateway_url()},
                      "children": {}, "restarts": {}}
        self.serving: int | None = None  # the pid of the stack endpoint's serve (the emulator's child)

    # state ----------------------------------------------------------------------------------------------
    def write_state(self, **changes) -> None:
        self.state.update(changes)
        self.state["children"] = {name: child.proc.pid for name, child in self.children.items()
                                  if child.proc is not None and child.running}
        if self.serving:
            self.state["children"]["serving"] = self.serving
        self.state["start_times"] = {str(pid): start_time(pid)
                                     for pid in (self.state["supervisor"], *self.state["children"].values())}
        tmp = self.layout.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        tmp.replace(self.layout.state)

    def phase(self, name: str) -> None:
        log.info("[%6.1fs] %s", time.monotonic() - self.started, name)
        self.write_state(phase=name)

    # children -------------------------------------------------------------------------------------------
    def _child(self, name: str) -> Child:
        env = base_env()
        if name == "emulator":
            argv = [sys.executable, "-m", "services.emulator", "--host", "127.0.0.1", "--port",
                    str(settings.EMULATOR_PORT)]
            env.update(DOGOPS_FUNCTION_URL_BASE=settings.function_url_base(),  # the FunctionUrl a host user calls
                       DOGOPS_HOSTING="native", DOGOPS_HOSTING_DIR=str(self.layout.hosting),
                       DOGOPS_EMULATOR_STATE_DIR=str(self.layout.emulator),
                       DOGOPS_GATEWAY_URL=settings.gateway_url())  # the models may fetch the gateway's samples
            if os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS"):  # each variant's workers (default 1)
                env["SAGEMAKER_MODEL_SERVER_WORKERS"] = os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"]
        else:
            argv = [sys.executable, "-m", "services.gateway", "--host", "127.0.0.1", "--port", str(settings.GATEWAY_PORT)]
            env.update(DOGOPS_EMULATOR_URL=settings.emulator_url(),
                       DOGOPS_GATEWAY_URL=settings.gateway_url(), DOGOPS_SAMPLES_DIR=str(self.layout.samples),
                       DOGOPS_LOG_DIR=str(self.layout.logs))
        return Child(name, argv, env, self.layout.logs / f"{name}.log")

    def start_service(self, name: str) -> None:
        """Start a long-running service and wait until its health URL answers 200."""
        if self.stopping.is_set():
            return
        self.phase(name)
        self.layout.tmp.mkdir(parents=True, exist_ok=True)
        child = self.children[name] = self._child(name)
        child.start()
        self.write_state()
        url, deadline = service_urls()[name], time.monotonic() + HEALTH_TIMEOUT[name]
        while not healthy(url):
            code = child.poll()
            if code is not None:
                raise BootstrapError(f"{name} exited with code {code} while starting{self._tail(child.log_path)}")
            if time.monotonic() > deadline:
                raise BootstrapError(f"{name} not healthy at {url} after {HEALTH_TIMEOUT[name]} s"
                                     f"{self._tail(child.log_path)}")
            if self.stopping.wait(0.3):
                return

    def step(self, name: str, argv: list[str], **env) -> None:
        """Run a one-shot step to completion (stopped early on SIGTERM)."""
        if self.stopping.is_set():
            return
        self.phase(name)
        child = self.children[name] = Child(name, argv, {**base_env(), **env}, self.layout.logs / f"{name}.log")
        child.start()
        self.write_state()
        while child.running and not self.stopping.wait(0.3):
            pass
        if self.stopping.is_set():
            return
        del self.children[name]
        code = child.poll()
        if code != 0:
            raise BootstrapError(f"{name} failed with exit code {code}{self._tail(child.log_path)}")

    @staticmethod
    def _tail(path: Path, lines: int = 8) -> str:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"; the end of {path}:\n" + "\n".join(text)

    # the stack ------------------------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Emulator, seed, train (unless current), publish, samples; then serving and gateway if not running."""
        ml, boot = self.layout.ml, [sys.executable, "-m", "services.stack.bootstrap"]
        self.start_service("emulator")
        self.step("seed", [*boot, "seed", "--base-dir", str(ml), *(["--data", str(self.data)] if self.data else [])])
        if self.retrain or not model_is_current(ml):
            if self.retrain:  # else an interrupted run resumes from its checkpoint (a finished one would "resume")
                shutil.rmtree(ml / "checkpoints", ignore_errors=True)
            self.step("train", [str(BIN / "train")], SAGEMAKER_BASE_DIR=str(ml),
                      DOGOPS_CACHE_DIR=str(self.layout.cache))
            self.retrain = False
        else:
            log.info("%s was trained on this data with these hyperparameters: not training again "
                     "(dogops up --retrain trains anyway)", ml / "model")
        self.step("publish", [*boot, "publish", "--base-dir", str(ml), "--image", SERVING_IMAGE])
        self.step("samples", [*boot, "samples", "--out", str(self.layout.samples)])
        self.wait_hosted()
        for name in RESTARTED:
            if not (name in self.children and self.children[name].running):
                self.start_service(name)

    def wait_hosted(self) -> None:
        """Until the emulator serves the stack's endpoint (``InService``); its FailureReason if it fails."""
        import boto3

        if self.stopping.is_set():
            return
        self.phase("serving")
        sagemaker = boto3.client("sagemaker", endpoint_url=settings.emulator_url(), region_name=settings.REGION,
                                 aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret())
        deadline = time.monotonic() + HOSTING_TIMEOUT
        while not self.stopping.wait(0.3):
            endpoint = sagemaker.describe_endpoint(EndpointName=settings.ENDPOINT_NAME)
            if endpoint["EndpointStatus"] == "InService":
                self.refresh_serving()
                return
            if endpoint["EndpointStatus"] == "Failed":
                raise BootstrapError(f"endpoint {settings.ENDPOINT_NAME} failed: {endpoint.get('FailureReason')} "
                                     f"(its server's log: {self.layout.hosting}/{settings.ENDPOINT_NAME}-*/*/serve.log)")
            if time.monotonic() > deadline:
                raise BootstrapError(f"endpoint {settings.ENDPOINT_NAME} not in service after {HOSTING_TIMEOUT} s "
                                     f"(status {endpoint['EndpointStatus']})")

    def refresh_serving(self) -> None:
        """Record the pid of the stack endpoint's ``serve`` (the emulator replaces one that dies)."""
        emulator = self.children.get("emulator")
        masters = [pid for pid in hosted_processes(self.layout.hosting, settings.ENDPOINT_NAME)
                   if emulator and emulator.proc and _parent(pid) == emulator.proc.pid]
        pid = masters[0] if masters else None
        if pid != self.serving:
            self.serving = pid
            self.write_state()

    def kill_hosted(self) -> None:
        """SIGKILL any model server left under ``hosting/`` (a dead emulator's: it could not stop them)."""
        for pid in hosted_processes(self.layout.hosting):
            kill_group(pid, signal.SIGKILL)

    def recover_emulator(self, code: int) -> None:
        """A dead emulator started again: it restores its state and hosts its endpoints; bootstrapped again only if
        the stack's endpoint did not come back (its state was lost)."""
        from botocore.exceptions import ClientError

        log.error("the emulator exited with code %s; starting it again (its state is restored from %s)", code,
                  self.layout.emulator)
        self.kill_hosted()  # the dead emulator's servers: the new one hosts its endpoints itself
        self.phase("recovering")
        began = time.monotonic()
        self.start_service("emulator")
        self.state["restarts"]["emulator"] = self.state["restarts"].get("emulator", 0) + 1
        try:
            self.wait_hosted()
        except (ClientError, BootstrapError) as exc:  # no such endpoint, or its model: the state did not survive
            log.error("the stack's endpoint did not come back (%s): bootstrapping again", exc)
            self.bootstrap()
        log.info("the emulator is back, its endpoint in service, %.1f s after it was started again",
                 time.monotonic() - began)

    def watch(self) -> None:
        """Restart serving or the gateway when it exits; bring a dead emulator back."""
        backoff = {name: 1.0 for name in RESTARTED}
        due: dict[str, float] = {}  # service -> when to restart it
        while not self.stopping.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            if self.stopping.is_set():
                break
            code = self.children["emulator"].poll()
            if code is not None:
                self.recover_emulator(code)
                self.phase("ready")
            self.refresh_serving()
            for name in RESTARTED:
                child = self.children[name]
                if name in due:
                    if time.monotonic() >= due[name]:
                        del due[name]
                        pid = child.start()
                        self.state["restarts"][name] = self.state["restarts"].get(name, 0) + 1
                        log.info("%s restarted as pid %d", name, pid)
                        self.write_state()
                    continue
                code = child.poll()
                if code is None:
                    continue
                if time.monotonic() - child.started > STABLE:
                    backoff[name] = 1.0
                log.warning("%s (pid %d) exited with code %s; restarting it in %.0f s (log: %s)", name,
                            child.proc.pid, code, backoff[name], child.log_path)
                due[name] = time.monotonic() + backoff[name]
                backoff[name] = min(backoff[name] * 2, MAX_BACKOFF)
                self.write_state()

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            if child.proc is not None:
                log.info("stopping %s (pid %d)", child.name, child.proc.pid)
                child.stop()
        self.kill_hosted()  # the emulator stops its servers as it exits; any it could not
        self.serving = None

    def rotate_logs(self) -> None:
        """Keep the stack's log files under their bound while it runs (``logrotate``)."""
        while not self.stopping.wait(logrotate.CHECK_SECONDS):
            try:
                logrotate.rotate_all([self.layout.logs, self.layout.hosting])
            except OSError as exc:  # a file that went away while rotated: next time
                log.warning("rotating the logs: %s", exc)

    def run(self) -> int:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self.rotate_logs, name="log-rotation", daemon=True).start()
        self.kill_hosted()  # an earlier stack's, killed with its supervisor
        shutil.rmtree(self.layout.tmp, ignore_errors=True)
        shutil.rmtree(self.layout.hosting, ignore_errors=True)  # models unpacked for earlier servers
        if self.fresh:
            shutil.rmtree(self.layout.emulator, ignore_errors=True)
        error = None
        try:
            self.bootstrap()
            if not self.stopping.is_set():
                self.write_state(ready_after_s=round(time.monotonic() - self.started, 1))
                self.phase("ready")
                self.watch()
        except Exception as exc:
            error = str(exc) if isinstance(exc, BootstrapError) else f"{type(exc).__name__}: {exc}"
            log.error("%s", error, exc_info=not isinstance(exc, BootstrapError))
            self.write_state(error=error)
            self.phase("failed")
        finally:
            if error is None:
                self.phase("stopping")
            self.stop()
            self.write_state(**({} if error else {"phase": "stopped"}))
        return 1 if error else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="default: $DOGOPS_STATE_DIR or .dogops/stack")
    parser.add_argument("--data", type=Path, help="data in the dogImages layout (default: generated)")
    parser.add_argument("--retrain", action="store_true", help="train even if the model on disk is current")
    parser.add_argument("--fresh", action="store_true", help="start the emulator empty (its saved state removed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervisor = Supervisor(Layout(args.state_dir), args.data and args.data.absolute(), args.retrain, args.fresh)

    def stop(signum, frame):
        log.info("%s: stopping the stack", signal.Signals(signum).name)
        supervisor.stopping.set()
        supervisor.wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.signal(signal.SIGCHLD, lambda *_: supervisor.wake.set())
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
