"""A local Docker registry (Debian's ``docker-registry``, distribution 2.8) for ECR's proxy endpoint.

Plain HTTP, which Docker accepts without configuration for a registry on loopback (compose
publishes it on 127.0.0.1); storage under ``root``. The emulator points ECR at it through
``DOGOPS_REGISTRY_URL`` (``services.ecr_gaps``).

    python -m services.registry --host 0.0.0.0 --port 5000 --root /var/lib/registry   (compose's registry)
"""

import argparse
import os
import subprocess
import time
from pathlib import Path

import requests


def write_config(host: str, port: int, root: Path) -> Path:
    """The registry's config (filesystem storage under ``root``, deletes allowed, no auth); return its path."""
    config = root / "config.yml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
                      f"  delete: {{enabled: true}}\nhttp:\n  addr: {host}:{port}\n")
    return config


def start(port: int, root: Path, log: Path, timeout: float = 30) -> subprocess.Popen:
    """Serve a registry on ``127.0.0.1:port``, storing under ``root``; return once ``/v2/`` answers."""
    config = write_config("127.0.0.1", port, root)
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"docker-registry did not answer on 127.0.0.1:{port}:\n{log.read_text()}")


def main() -> None:
    """Write the config and become the registry (its process, its signals)."""
    parser = argparse.ArgumentParser(prog="python -m services.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--root", type=Path, default=Path("/var/lib/registry"))
    args = parser.parse_args()
    config = write_config(args.host, args.port, args.root)
    os.execvp("docker-registry", ["docker-registry", "serve", str(config)])


if __name__ == "__main__":
    main()
