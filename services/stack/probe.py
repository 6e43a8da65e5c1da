"""A container healthcheck that restarts what hangs, not only what exits (compose's ``healthcheck.test``).

    python -m services.stack.probe URL [--timeout 3] [--failures 3]

GET ``URL`` (the service's own health route, answered by the same server threads as its requests); exit 0 on a
200. Docker only marks a failing container ``unhealthy``: after ``--failures`` failed probes in a row (counted in a
file under /tmp) the probe SIGKILLs the service (the children of the container's init, ``init: true``: pid 1 must
be ``docker-init`` or ``tini``, so that a probe run elsewhere never kills anything), so the container exits and its
restart policy starts it again. A service younger than ``--grace`` seconds is never killed: it may still be
starting (the emulator restores its state first), as Docker's ``start_period`` ignores early failures. Standard
library only.
"""

import argparse
import os
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path


def _ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status == 200
    except OSError:
        return False


INITS = ("docker-init", "tini")


def service_pids(init: int = 1) -> list[int]:
    """The processes the container's init runs (the service); none unless ``init`` is an init of containers."""
    try:
        if Path(Path(f"/proc/{init}/cmdline").read_bytes().split(b"\0")[0].decode()).name not in INITS:
            return []
        return [int(pid) for pid in Path(f"/proc/{init}/task/{init}/children").read_text().split()]
    except (OSError, UnicodeDecodeError):
        return []


def age(pid: int) -> float:
    """Seconds since process ``pid`` started (``/proc``: its start in clock ticks after boot, and the uptime)."""
    started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack.probe", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds for one probe")
    parser.add_argument("--failures", type=int, default=3, help="failed probes in a row before the kill")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds after its start a service is not killed")
    parser.add_argument("--state", type=Path, default=Path(tempfile.gettempdir()) / "dogops-probe-failures")
    parser.add_argument("--init-pid", type=int, default=1, help=argparse.SUPPRESS)  # tests: an init of their own
    args = parser.parse_args(argv)
    if _ok(args.url, args.timeout):
        args.state.unlink(missing_ok=True)
        return 0
    try:
        failed = int(args.state.read_text()) + 1
    except (OSError, ValueError):
        failed = 1
    args.state.write_text(str(failed))
    print(f"{args.url}: no 200 within {args.timeout:g} s ({failed} in a row)", file=sys.stderr)
    if failed >= args.failures:
        args.state.unlink(missing_ok=True)
        for pid in service_pids(args.init_pid):
            if age(pid) < args.grace:
                print(f"the service (pid {pid}) started {age(pid):.0f} s ago: still starting?", file=sys.stderr)
                continue
            print(f"killing the hung service (pid {pid}) so that the container restarts", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
    return 1


if __name__ == "__main__":
    sys.exit(main())
