"""Shared fixtures: generated data, and helpers that run the real console scripts."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dogops.synthetic import generate

BIN = Path(sys.executable).parent
# The stacks these tests start share one root secret (as a stack's processes do), never the developer's own stack's.
os.environ["DOGOPS_ROOT_SECRET"] = secrets.token_urlsafe(24)
# Small but real: 10 breeds, 64 px, the offline-available pretrained backbone.
FAST = {"backbone": "efficientnet_lite0", "image_size": "64", "batch_size": "32",
        "learning_rate": "0.003", "epochs": "12", "seed": "0"}


def flags(hyperparameters: dict) -> list[str]:
    """``{"epochs": "3"}`` -> ``["--epochs", "3"]``."""
    return [item for key, value in hyperparameters.items() for item in (f"--{key}", str(value))]


def script_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(name: str, *args, env=None, timeout=300, check=False) -> subprocess.CompletedProcess:
    """Run a console script of the venv (``train``, ``dogops``) and capture its output."""
    result = subprocess.run([str(BIN / name), *map(str, args)], env=env or script_env(), text=True,
                            capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def read_metrics(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "metrics.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """10 generated breeds, 20 training images each, 64 px."""
    root = tmp_path_factory.mktemp("data")
    generate(root, classes=10, per_class=20, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def sample(data_dir) -> tuple[bytes, int]:
    """A test-split JPEG of class index 3 and its label."""
    path = sorted((data_dir / "test" / "004.Akita").iterdir())[0]
    return path.read_bytes(), 3


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_dir, cache_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One real CLI training run, shared by the tests that inspect its results."""
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    result = run_script("train", "--data", data_dir, "--model-dir", model_dir, "--checkpoint-dir",
                        model_dir.parent / "checkpoints", "--cache-dir", cache_dir, *flags(FAST), check=True)
    return model_dir, result


@pytest.fixture(scope="session")
def s3_env():
    """moto's S3 server on loopback, and the environment that points boto3 at it."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield script_env(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                     AWS_DEFAULT_REGION="us-east-1")
    server.terminate()
    server.wait(timeout=10)


def s3_client(s3_env: dict):
    """A boto3 S3 client pointed at the emulator of ``s3_env``."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def tarball(folder: Path) -> bytes:
    """``folder`` packed as SageMaker packs /opt/ml/model: a gzipped tar of its contents."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()
