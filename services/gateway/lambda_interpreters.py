"""Interpreters of Lambda's Python runtimes: one venv per minor version, ``.venv-lambda/python3.X`` beside the
repository's ``.venv`` (``DOGOPS_LAMBDA_VENVS`` moves them), each from this machine's pyenv Python of that minor
with the Lambda runtime's packages only (``requirements/lambda-runtime.txt``: ``awslambdaric``, boto3 and their
dependencies, exact and hashed). A function configured for ``python3.12`` runs on ``python3.12``'s venv when it
exists (``lambda_sandbox``).

``python -m services.gateway.lambda_interpreters`` (``make setup``) makes them: the newest pyenv patch release
of each minor in ``MINORS``; a minor this machine has no Python for is skipped, and a venv already made from the
same lock and Python is kept.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

MINORS = ("3.11", "3.12", "3.13")  # the Lambda Python runtimes venvs are made for
REPOSITORY = Path(__file__).resolve().parents[2]
LOCK = REPOSITORY / "requirements" / "lambda-runtime.txt"


def venvs() -> Path:
    return Path(os.environ.get("DOGOPS_LAMBDA_VENVS") or REPOSITORY / ".venv-lambda")


def python(runtime: str) -> Path | None:
    """The Python of ``runtime``'s venv (``python3.12``), or None when none was made."""
    venv = venvs() / runtime
    return venv / "bin" / "python" if (venv / ".installed").is_file() else None


def site_packages(runtime: str) -> Path:
    return venvs() / runtime / "lib" / runtime / "site-packages"


def pyenv_python(minor: str) -> Path | None:
    """The newest patch release of ``minor`` among pyenv's versions (``PYENV_ROOT``, default ``~/.pyenv``)."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for folder in versions.glob(f"{minor}.*"):
        patch, executable = folder.name[len(minor) + 1:], folder / "bin" / f"python{minor}"
        if patch.isdigit() and executable.is_file():
            found.append((int(patch), executable))
    return max(found)[1] if found else None


def make(minor: str, base: Path, uv: str) -> bool:
    """``python<minor>``'s venv from ``base`` with the lock's packages; False when it was already made so."""
    venv = venvs() / f"python{minor}"
    stamp = f"{hashlib.sha256(LOCK.read_bytes()).hexdigest()} {base}\n"
    if (venv / ".installed").is_file() and (venv / ".installed").read_text() == stamp:
        return False
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--require-hashes",
                    "-r", str(LOCK)], check=True)
    (venv / ".installed").write_text(stamp)
    return True


def main() -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("lambda_interpreters: uv is not installed (make setup installs it in .venv)")
    for minor in MINORS:
        base = pyenv_python(minor)
        if base is not None and make(minor, base, uv):
            print(f"Lambda runtime python{minor}: {venvs() / f'python{minor}'} from {base}")


if __name__ == "__main__":
    main()
