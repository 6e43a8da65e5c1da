"""A real `serve` process on loopback, started from the trained artifact."""

import hashlib
import importlib.util
import io
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import torch
from PIL import Image

from ..conftest import BIN, free_port, script_env


class Server:
    """A running `serve` subprocess and its base URL."""

    def __init__(self, base_dir: Path, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base_dir.mkdir(parents=True, exist_ok=True)
        self.log = base_dir / f"serve-{self.port}.log"
        self.proc = subprocess.Popen([str(BIN / "serve")], stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     env=script_env(SAGEMAKER_BASE_DIR=base_dir, SAGEMAKER_BIND_TO_PORT=self.port, DOGOPS_BIND_HOST="127.0.0.1",
                                                    **env))

    def wait_ready(self, timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a loaded machine
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve not healthy after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> float:
        """SIGTERM, as SageMaker sends it; return how long the exit took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return time.monotonic() - started

    def invoke(self, body: bytes, content_type: str = "image/jpeg", **headers) -> requests.Response:
        return requests.post(self.url + "/invocations", data=body,
                             headers={"Content-Type": content_type, **headers}, timeout=60)


def tree_digest(root: Path) -> str:
    """Paths, modes and bytes of everything under ``root``: changes if the server writes there."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(f"{path.relative_to(root)}:{path.stat().st_mode}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def ml_base(trained, tmp_path_factory) -> Path:
    """A SageMaker-style /opt/ml root holding the trained model."""
    base = tmp_path_factory.mktemp("opt-ml")
    shutil.copytree(trained[0], base / "model")
    return base


@pytest.fixture(scope="session")
def server(ml_base):
    before = tree_digest(ml_base / "model")
    srv = Server(ml_base).wait_ready()
    yield srv
    assert srv.stop() < 30
    assert srv.proc.returncode == 0, srv.log.read_text()
    assert tree_digest(ml_base / "model") == before, "the server wrote into the read-only model directory"


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


NET = '''
import torch


class Net(torch.nn.Module):
    """Three features in, two scores out; the dropout shows whether the server called eval()."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(3, 8)
        self.drop = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.drop(torch.tanh(self.hidden(x))))
'''


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> torch.nn.Module:
    """The user's network, built from the same source the server imports, in eval mode."""
    source = tmp_path_factory.mktemp("net") / "net.py"
    source.write_text(NET)
    spec = importlib.util.spec_from_file_location("user_net", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.Net().eval()
