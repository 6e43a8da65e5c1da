"""The user's inference code, where AWS's inference toolkits find it, made ready before the model loads.

- Where: ``SAGEMAKER_SUBMIT_DIRECTORY`` when it is an ``s3://`` ``sourcedir.tar.gz`` (what the SageMaker SDK
  sets for a model it does not repack): downloaded with boto3 (so ``AWS_ENDPOINT_URL`` reaches an emulator)
  and unpacked by the one safe extractor (no absolute names, ``..``, links or special files; bounded); a local
  directory that exists; else the model's ``code/`` (the SDK's repacked ``model.tar.gz``, whose environment
  names ``/opt/ml/model/code``).
- Its ``requirements.txt`` is installed with pip before the handlers are imported, as the toolkits do; a failure
  stops the server (the endpoint fails with pip's last error line). The packages go into a private environment
  under the server's temporary directory (``training.private_env``), first on the path, so the image's (or
  the stack's) own Python is never changed and what is installed already is not installed again.
"""

import atexit
import logging
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

from training.archive import ArchiveError, extract, parse_s3_uri
from training.private_env import private_python, purelib

log = logging.getLogger("serve")

REQUIREMENTS = "requirements.txt"
PIP_TIMEOUT_S = 900


class UserCodeError(RuntimeError):
    """The user's code could not be fetched or its requirements installed; the message says why."""


def code_dir(submit_directory: str, model_dir: Path) -> Path:
    """The directory the handler module and its requirements come from."""
    if submit_directory.startswith("s3://"):
        return _fetch(submit_directory)
    if submit_directory and Path(submit_directory).is_dir():
        return Path(submit_directory)
    return model_dir / "code"


def temporary_folder(prefix: str) -> Path:
    """A fresh folder in the temporary directory, removed when this process ends (not when one of its forked
    workers does), so no start of a server leaves a copy behind."""
    target = Path(tempfile.mkdtemp(prefix=prefix))
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(target, ignore_errors=True))
    return target


def _fetch(url: str) -> Path:
    import boto3

    target = temporary_folder("dogops-code-")
    archive = target.with_suffix(".tar.gz")
    log.info("downloading SAGEMAKER_SUBMIT_DIRECTORY %s", url)
    try:
        bucket, key = parse_s3_uri(url)
        boto3.client("s3").download_file(bucket, key, str(archive))
        extract(archive, target)
    except ArchiveError as exc:
        raise UserCodeError(f"SAGEMAKER_SUBMIT_DIRECTORY {url} is not a safe .tar.gz: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a start-up error in one line
        raise UserCodeError(f"SAGEMAKER_SUBMIT_DIRECTORY {url} could not be fetched: {type(exc).__name__}: {exc}") \
            from None
    finally:
        archive.unlink(missing_ok=True)
    return target


def install_requirements(code: Path) -> Path | None:
    """``code/requirements.txt`` installed into a private environment put first on ``sys.path``; its
    site-packages, or None when there is no such file."""
    requirements = code / REQUIREMENTS
    if not requirements.is_file():
        return None
    folder = temporary_folder("dogops-requirements-")
    python = private_python(folder)
    log.info("installing %s", requirements)
    try:
        result = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                                 "-r", str(requirements)], cwd=code, capture_output=True, text=True,
                                timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserCodeError(f"{requirements}: pip did not finish within {PIP_TIMEOUT_S} s") from None
    for line in result.stdout.splitlines():
        log.info("pip: %s", line)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "")
        raise UserCodeError(f"failed to install {requirements} (pip exit {result.returncode}): {error.strip()}")
    packages = purelib(folder)
    before = list(sys.path)
    site.addsitedir(str(packages))  # its .pth files too; then first on the path, as an install into the image
    sys.path[:] = [p for p in sys.path if p not in before] + before
    return packages
