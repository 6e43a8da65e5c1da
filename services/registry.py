"""A local Docker registry (Debian's ``docker-registry``, distribution 2.8) for ECR's proxy endpoint.

Plain HTTP on loopback, which Docker accepts without configuration; storage in ``root``.
The emulator points ECR at it through ``DOGOPS_REGISTRY_URL`` (``services.ecr_gaps``).
"""

import subprocess
import time
from pathlib import Path

import requests


def start(port: int, root: Path, log: Path, timeout: float = 30) -> subprocess.Popen:
    """Serve a registry on ``127.0.0.1:port``, storing under ``root``; return once ``/v2/`` answers."""
    config = root / "config.yml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
                      f"  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"docker-registry did not answer on 127.0.0.1:{port}:\n{log.read_text()}")
