"""What an execution environment sees, as on Lambda's Python runtime: the deployment package, its layers and
the runtime's own packages, and nothing of the stack.

- the runtime directory (AWS's ``/var/runtime``): ``awslambdaric``, ``boto3`` and their dependencies, linked
  from this interpreter's installed distributions (nothing else of the venv), and ``bootstrap.py``;
- the interpreter: this one, isolated (``-I -S``: no ``PYTHONPATH``, no site-packages, no current directory).
  Lambda runs the configured runtime's minor version; the stack has one interpreter with ``awslambdaric``, so a
  function configured for another minor runs on it, and ``mismatch`` says so (the function's log, ``dogops
  status``);
- the task root (``LAMBDA_TASK_ROOT``) is the unpacked package, read-only (``read_only``);
- ``/opt``: the configuration's layers unpacked in order into one directory per list of layers.
"""

import importlib.metadata
import os
import re
import shutil
import stat
import sys
from pathlib import Path

RUNTIME_PACKAGES = ("awslambdaric", "boto3")  # and their dependencies: what Lambda's Python runtime provides
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
INTERPRETER = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def _closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The distributions ``names`` need, extras left out."""
    found, todo = {}, list(names)
    while todo:
        name = re.split(r"[\s;<>=!~(\[]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(name)
        todo += [r for r in found[name].requires or [] if "extra ==" not in r]
    return list(found.values())


def build_runtime(target: Path) -> Path:
    """The runtime directory at ``target``: each top-level entry of the runtime's distributions linked in."""
    target.mkdir(parents=True, exist_ok=True)
    for dist in _closure(RUNTIME_PACKAGES):
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)
    shutil.copyfile(BOOTSTRAP, target / "bootstrap.py")
    return target


def command(runtime_dir: Path, opt_dir: Path) -> list[str]:
    return [sys.executable, "-I", "-S", str(runtime_dir / "bootstrap.py"), str(opt_dir)]


def mismatch(runtime: str) -> str | None:
    """The line that says the configured runtime is not the interpreter that runs it, or None."""
    if runtime == INTERPRETER or not runtime.startswith("python"):
        return None
    return (f"dogops: this function is configured for {runtime}; the local stack has no {runtime} with the "
            f"Lambda runtime client, so {INTERPRETER} runs it\n")


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
