"""The stack's own entrypoints as subprocesses on free loopback ports: ``python -m services.emulator`` and
``python -m services.gateway``, each waited for on its ``/_dogops/health``."""

import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import boto3
import requests

from services.stack import settings

from ..conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A started ``python -m <module>``, its URL and its log."""

    def __init__(self, module: str, log_dir: Path, port: int | None = None, **env):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{module.rsplit('.', 1)[-1]}-{self.port}.log"
        environ = {**os.environ, **settings.emulator_env(), **{k: str(v) for k, v in env.items()}}
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(self.port)], cwd=ROOT, env=environ,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/_dogops/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"not healthy after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def emulator(log_dir: Path, **env) -> Process:
    """An emulator; ``env`` adds settings (DOGOPS_FUNCTION_URL_BASE, ...)."""
    return Process("services.emulator", log_dir, **env)


def gateway(log_dir: Path, emulator_url: str, port: int | None = None, **env) -> Process:
    """A gateway that finds the control plane at ``emulator_url``, on ``port`` (default: a free one); ``env`` adds
    settings (DOGOPS_ENDPOINT_TIMEOUT, ...)."""
    port = port or free_port()
    return Process("services.gateway", log_dir, port, DOGOPS_EMULATOR_URL=emulator_url,
                   DOGOPS_GATEWAY_URL=f"http://127.0.0.1:{port}", **env)


def route(emulator_url: str, endpoint: str, server_url: str, region: str = settings.REGION) -> None:
    """Route the gateway's InvokeEndpoint for ``endpoint`` to the model server at ``server_url``, through the
    emulator's route table (as hosting does)."""
    from services.hosting.endpoints import register_route
    from services.stack.settings import routes_url

    register_route(routes_url(emulator_url, region, endpoint), server_url)


def client(service: str, url: str, region: str = settings.REGION, **config):
    """A boto3 client for ``service`` at ``url`` with the emulator's credentials."""
    from botocore.config import Config

    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=settings.ACCESS_KEY,
                        aws_secret_access_key=settings.root_secret(), config=Config(**config))


def deploy_function(emulator_url: str, name: str, source: str, timeout: int = 10,
                    concurrency: int | None = None) -> None:
    """CreateFunction on the emulator: ``source`` as ``lambda_function.py``, handler ``lambda_function.handler``."""
    from dogops.lambda_package import build_zip

    iam = client("iam", emulator_url)
    trust = '{"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, ' \
            '"Action": "sts:AssumeRole"}]}'
    try:
        role = iam.create_role(RoleName="test-function", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="test-function")["Role"]["Arn"]
    lam = client("lambda", emulator_url)
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="lambda_function.handler",
                        Code={"ZipFile": build_zip({"lambda_function.py": source.encode()})}, Timeout=timeout)
    if concurrency is not None:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)


class LoopbackServer(ThreadingHTTPServer):
    """A stand-in HTTP server on a free loopback port, serving ``handler`` on a daemon thread; ``url`` is its base."""

    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A ``model.tar.gz`` holding ``files`` (name: bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
