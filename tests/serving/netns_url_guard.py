"""The URL guard, probed with internal addresses. Run only inside a loopback-only
network namespace (test_url_guard.py starts it with `unshare -n`), so that a
broken guard fails these tests and still sends no packet anywhere."""

import http.server
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from serving.errors import FetchError
from serving.url_fetch import FetchPolicy, fetch_image

from .conftest import Server

pytestmark = pytest.mark.skipif(os.environ.get("DOGOPS_IN_NETNS") != "1", reason="needs the network namespace")


class Files(http.server.BaseHTTPRequestHandler):
    jpeg = b""

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
        elif parts.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
        elif parts.path == "/dog.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.jpeg)))
            self.end_headers()
            self.wfile.write(self.jpeg)
            return
        elif parts.path == "/page":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
        elif parts.path == "/drip.jpg":  # one byte a second, each well inside the read timeout
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "30")
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:  # the client gave up
                pass
            return
        elif parts.path == "/drip-headers.jpg":  # the status line and headers one byte a second
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: aaaaaaaaaaaaaaaa\r\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        elif parts.path == "/big.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()  # no Content-Length: the limit must hold while streaming
            for _ in range(8):
                self.wfile.write(b"\xff" * (1024 * 1024))
            return
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def files(sample):
    handler = type("Handler", (Files,), {"jpeg": sample[0]})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def ml_base() -> Path:
    """The outer session's /opt/ml root with its trained model (test_url_guard.py passes it): no second training."""
    return Path(os.environ["DOGOPS_TEST_ML_BASE"])


@pytest.fixture(scope="module")
def guarded(ml_base, files):
    server = Server(ml_base, DOGOPS_FETCH_ALLOW=files).wait_ready()
    yield server
    server.stop()


def _fetch(server, url):
    return server.invoke(('{"url": "%s"}' % url).encode(), "application/json")


def test_the_allow_listed_file_server_is_fetched(guarded, files, sample):
    response = _fetch(guarded, f"http://{files}/dog.jpg")
    assert response.status_code == 200, response.text
    assert max(range(10), key=response.json()[0].__getitem__) == sample[1]
    assert _fetch(guarded, f"http://{files}/redirect?to=/dog.jpg").status_code == 200


BLOCKED = [
    "http://127.0.0.1:1/dog.jpg",  # loopback, another port than the allow-listed one
    "http://localhost:{port}/dog.jpg",  # a name that resolves to loopback
    "http://[::1]:{port}/dog.jpg",
    "http://[::ffff:127.0.0.1]:{port}/dog.jpg",  # IPv4-mapped IPv6
    "http://2130706433:{port}/dog.jpg",  # 127.0.0.1 written as a number
    "http://0.0.0.0:{port}/dog.jpg",
    "http://10.0.0.1/dog.jpg",
    "http://172.16.5.4/dog.jpg",
    "http://192.168.1.1/dog.jpg",
    "http://100.64.0.1/dog.jpg",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
    "http://[fd00:ec2::254]/latest/meta-data/",  # cloud metadata, IPv6
    "http://[fe80::1]/x.jpg",
    "http://224.0.0.1/x.jpg",  # multicast
    "http://[64:ff9b::7f00:1]:{port}/x.jpg",  # NAT64 of 127.0.0.1
    "http://[64:ff9b:1::a9fe:a9fe]/x.jpg",  # local-use NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]:{port}/x.jpg",  # 6to4 of 127.0.0.1
    "http://[::127.0.0.1]:{port}/x.jpg",  # IPv4-compatible
    "http://[::a9fe:a9fe]/latest/meta-data/",  # IPv4-compatible 169.254.169.254
    "http://[::ffff:0:7f00:1]:{port}/x.jpg",  # IPv4-translated
    "http://[2001:0:a00:1::f7f7:f7f7]/x.jpg",  # Teredo, server 10.0.0.1
    "http://{files}/redirect?to=http://10.0.0.1/x.jpg",  # a redirect to a private address
    "http://{files}/redirect?to=http://169.254.169.254/latest/meta-data/",
    "http://{files}/redirect?to=http://localhost:{port}/dog.jpg",
]


@pytest.mark.parametrize("url", BLOCKED)
def test_internal_addresses_are_refused(guarded, files, url):
    url = url.format(files=files, port=files.split(":")[1])
    response = _fetch(guarded, url)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "url_fetch_failed"
    assert "non-public address" in response.json()["message"]


@pytest.mark.parametrize("host", ["localhost", "2130706433"])
def test_a_refusal_does_not_tell_the_address_a_name_resolves_to(host):
    with pytest.raises(FetchError, match="non-public address") as refused:
        fetch_image(f"http://{host}:1/x.jpg")
    assert host in refused.value.message and "127.0.0.1" not in refused.value.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/a.jpg",
                                 "{files}/dog.jpg", "http://{files}/redirect?to=file:///etc/passwd"])
def test_other_schemes_are_refused(guarded, files, url):
    response = _fetch(guarded, url.format(files=files))
    assert response.status_code == 400 and "only http and https" in response.json()["message"]


@pytest.mark.parametrize("path,message", [("/loop", "more than 3 redirects"), ("/page", "not an image"),
                                          ("/big.jpg", "limit"), ("/missing", "HTTP 404")])
def test_bad_responses_are_refused(guarded, files, path, message):
    response = _fetch(guarded, f"http://{files}{path}")
    assert response.status_code == 400 and message in response.json()["message"]


def test_connect_timeout_is_bounded():
    with pytest.raises(FetchError, match="failed"):
        fetch_image("http://127.0.0.1:1/x.jpg", FetchPolicy(allow=("127.0.0.1/32",), connect_timeout=1))


def test_a_dripping_server_is_cut_off_at_the_total_timeout(files):
    policy = FetchPolicy(allow=(files,), read_timeout=5, total_timeout=2)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 2 s"):  # the server stops after 30 s: bounded
        fetch_image(f"http://{files}/drip.jpg", policy)
    assert time.monotonic() - started < 3


def test_a_server_dripping_its_headers_is_cut_off_at_the_total_timeout(files):
    policy = FetchPolicy(allow=(files,), read_timeout=5, total_timeout=2)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 2 s"):
        fetch_image(f"http://{files}/drip-headers.jpg", policy)
    assert time.monotonic() - started < 3


def test_a_hanging_resolver_is_given_up_on_after_the_connect_timeout(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(15)
        raise socket.gaierror("released")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="could not resolve host 'files.example' within 1 s"):
            fetch_image("http://files.example/x.jpg", FetchPolicy(connect_timeout=1))
        assert time.monotonic() - started < 2
    finally:
        release.set()


def test_still_healthy_after_all_of_it(guarded):
    assert requests.get(guarded.url + "/ping", timeout=2).status_code == 200
