"""A local Docker registry (Debian's ``docker-registry``, distribution 2.8) for ECR's proxy endpoint, behind the
stack's guard.

Plain HTTP, which Docker accepts without configuration for a registry on loopback (compose
publishes it on 127.0.0.1); storage under ``root``. The emulator points ECR at it through
``DOGOPS_REGISTRY_URL`` (``services.ecr_gaps``). The registry itself listens on a loopback port of its own; the
port given here is a relay with the stack's ``Host`` and web-origin checks (``services.security.guard``) that
streams every request and answer through (layers are gigabytes), so no web page can push to it or delete from it.

    python -m services.stack.registry --host 0.0.0.0 --port 5000 --root /var/lib/registry   (compose's registry)
"""

import argparse
import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request

from ..security.admission import BoundedServer
from ..security.guard import Guard, raw_uri

CHUNK = 1 << 20
MAX_CONNECTIONS = 64  # connection threads (docker pushes and pulls a few layers at once); more wait to connect
IDLE_TIMEOUT = 60  # seconds an idle keep-alive connection keeps its thread
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "expect"}


def write_config(host: str, port: int, root: Path) -> Path:
    """The registry's config (filesystem storage under ``root``, deletes allowed, no auth); return its path."""
    config = root / "config.yml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(f"version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
                      f"  delete: {{enabled: true}}\nhttp:\n  addr: {host}:{port}\n")
    return config


def _wait(url: str, proc: subprocess.Popen, log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the registry did not answer at {url}:\n{log}")


def start(port: int, root: Path, log: Path, timeout: float = 30) -> subprocess.Popen:
    """Serve a guarded registry on ``127.0.0.1:port``, storing under ``root``; return once ``/v2/`` answers."""
    proc = subprocess.Popen([sys.executable, "-m", "services.stack.registry", "--port", str(port), "--root", str(root)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _wait(f"http://127.0.0.1:{port}/v2/", proc, "see " + str(log), timeout)
    return proc


class Relay:
    """Each request on to the registry at ``127.0.0.1:port``, streamed both ways, ``Host`` kept (the registry
    writes its upload locations with it)."""

    def __init__(self, port: int):
        self.port = port

    def __call__(self, environ, start_response):
        request = Request(environ)
        upstream = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        upstream.putrequest(request.method, raw_uri(environ),
                            skip_host=True, skip_accept_encoding=True)
        for key, value in request.headers.items():
            if key.lower() not in HOP_BY_HOP:
                upstream.putheader(key, value)
        chunked = request.content_length is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders()
        while block := request.stream.read(CHUNK):
            upstream.send(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            upstream.send(b"0\r\n\r\n")
        answer = upstream.getresponse()
        start_response(f"{answer.status} {answer.reason}",
                       [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP])

        def body():
            try:
                while block := answer.read(CHUNK):
                    yield block
            finally:
                upstream.close()

        return body()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    """Start the registry on a loopback port of its own and serve the guarded relay to it until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m services.stack.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--root", type=Path, default=Path("/var/lib/registry"))
    args = parser.parse_args()
    internal = _free_port()
    registry = subprocess.Popen(["docker-registry", "serve", str(write_config("127.0.0.1", internal, args.root))])
    try:
        _wait(f"http://127.0.0.1:{internal}/v2/", registry, "see its output above", 30)
        server = BoundedServer(args.host, args.port, Guard(Relay(internal), function_urls=False), WSGIRequestHandler,
                               MAX_CONNECTIONS, IDLE_TIMEOUT)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"registry (guarded) on http://{args.host}:{args.port}", flush=True)
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        registry.terminate()
        registry.wait(timeout=20)


if __name__ == "__main__":
    main()
