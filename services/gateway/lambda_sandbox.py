"""What an execution environment sees, as on Lambda's Python runtime: the deployment package, its layers and
the runtime's own packages, and nothing of the stack.

- the runtime directory (AWS's ``/var/runtime``): ``awslambdaric``, ``boto3`` and their dependencies, linked
  from the interpreter's installed distributions (nothing else of its venv), and ``bootstrap.py``;
- the interpreter (``interpreter``), isolated (``-I -S``: no ``PYTHONPATH``, no site-packages, no current
  directory): the configured runtime's minor version, from its venv (``lambda_interpreters``, made by ``make
  setup`` where pyenv has that minor), the runtime directory then linked from that venv; without one, this
  interpreter, and ``mismatch`` says so (the function's log, ``dogops status``);
- the task root (``LAMBDA_TASK_ROOT``) is the unpacked package, read-only (``read_only``);
- ``/opt``: the configuration's layers unpacked in order into one directory per list of layers;
- on Linux with ``unshare`` (util-linux; a user namespace too unless root), each worker runs in a mount namespace
  of its own (``contained``) where the task root and ``/opt`` are read-only mounts (writes fail with EROFS,
  "Read-only file system", as on Lambda, root included) and its ``TMPDIR`` is a tmpfs of the function's
  ``EphemeralStorage`` size (a write past it fails with ENOSPC). Without it they are only chmod'ed read-only
  and ``TMPDIR`` is a plain directory.
"""

import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import lambda_interpreters

RUNTIME_PACKAGES = ("awslambdaric", "boto3")  # and their dependencies: what Lambda's Python runtime provides
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
INTERPRETER = f"python{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class Interpreter:
    """What runs a function's workers: ``python`` with ``runtime_dir``; ``runs`` is its runtime (``python3.12``)."""

    python: str
    runtime_dir: Path
    runs: str


def _closure(names: tuple[str, ...], path: list[str]) -> list[importlib.metadata.Distribution]:
    """The distributions ``names`` need, found on ``path``, extras left out."""
    found, todo = {}, list(names)
    while todo:
        name = re.split(r"[\s;<>=!~(\[]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in found:
            continue
        found[name] = next(iter(importlib.metadata.distributions(name=name, path=path)), None)
        if found[name] is None:
            raise importlib.metadata.PackageNotFoundError(name)
        todo += [r for r in found[name].requires or [] if "extra ==" not in r]
    return list(found.values())


def build_runtime(target: Path, path: list[str]) -> Path:
    """The runtime directory at ``target``: each top-level entry of the runtime's distributions on ``path``
    linked in."""
    target.mkdir(parents=True, exist_ok=True)
    for dist in _closure(RUNTIME_PACKAGES, path):
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)
    shutil.copyfile(BOOTSTRAP, target / "bootstrap.py")
    return target


def interpreter(runtime: str, root: Path) -> Interpreter:
    """The interpreter of ``runtime``'s workers, its runtime directory made under ``root``: ``runtime``'s venv
    when there is one, else this interpreter."""
    python = lambda_interpreters.python(runtime)
    if python is not None:
        site = str(lambda_interpreters.site_packages(runtime))
        return Interpreter(str(python), build_runtime(root / runtime, [site]), runtime)
    return Interpreter(sys.executable, build_runtime(root / "stack", sys.path), INTERPRETER)


def command(interpreter: Interpreter, opt_dir: Path) -> list[str]:
    return [interpreter.python, "-I", "-S", str(interpreter.runtime_dir / "bootstrap.py"), str(opt_dir)]


_CONTAIN = """
tmp=$1 size=$2 task=$3 opt=$4
shift 4
mount -t tmpfs -o "size=${size}m,mode=1777" tmpfs "$tmp" || exit 97
for ro in "$task" "$opt"; do
    { mount --bind "$ro" "$ro" && mount -o remount,bind,ro "$ro"; } || exit 97
done
cd "$task" || exit 97
exec "$@"
"""


def _unshare() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return []
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    return [unshare, *namespaces, "--propagation", "private"]


def _can_contain() -> bool:
    """Whether this machine lets a process mount in a namespace of its own (a container may not)."""
    prefix = _unshare()
    if not prefix:
        return False
    probe = Path(os.environ.get("TMPDIR") or "/tmp")
    try:
        result = subprocess.run([*prefix, "sh", "-c", _CONTAIN, "probe", str(probe), "1", str(probe), str(probe),
                                 "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


CAN_CONTAIN = _can_contain()


def contained(argv: list[str], tmp: Path, tmp_mb: int, task_root: Path, opt_dir: Path) -> list[str]:
    """``argv`` in a mount namespace of its own: ``tmp`` a tmpfs of ``tmp_mb`` MB, the task root and ``/opt``
    read-only; ``argv`` itself where the machine cannot."""
    if not CAN_CONTAIN:
        return argv
    return [*_unshare(), "sh", "-c", _CONTAIN, "lambda-sandbox", str(tmp), str(tmp_mb), str(task_root),
            str(opt_dir), *argv]


def mismatch(runtime: str, runs: str) -> str | None:
    """The line that says the configured runtime is not the interpreter ``runs`` that runs it, or None."""
    if runtime == runs or not runtime.startswith("python"):
        return None
    return (f"dogops: this function is configured for {runtime}; the local stack has no {runtime} with the "
            f"Lambda runtime client (make setup makes one where pyenv has that Python), so {runs} runs it\n")


def read_only(root: Path) -> None:
    """Take the write bits off everything under ``root`` (the task root is read-only on Lambda)."""
    for path in [*root.rglob("*"), root]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)


def remove(root: Path) -> None:
    """Remove a tree that ``read_only`` made, writable again first."""
    if root.exists():
        for directory, _, _ in os.walk(root):
            os.chmod(directory, 0o755)
        shutil.rmtree(root, ignore_errors=True)
