"""`dogops data dogimages` against a real HTTP server on loopback that honours Range requests."""

import hashlib
import http.server
import threading
import time
import zipfile

import pytest

from ..conftest import run_script


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    etag = ""

    def do_GET(self):
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(self.payload):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{self.etag}"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(data_dir, tmp_path):
    archive = tmp_path / "dogImages.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(data_dir.rglob("*.jpg")):
            z.write(path, "dogImages/" + path.relative_to(data_dir).as_posix())
    handler = type("Handler", (_RangeHandler,), {"payload": archive.read_bytes(),
                                                  "etag": hashlib.md5(archive.read_bytes()).hexdigest()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/dogImages.zip", handler
    httpd.shutdown()


def test_partial_download_resumes_and_unpacks(server, tmp_path):
    url, handler = server
    out = tmp_path / "out"
    out.mkdir()
    (out / "dogImages.zip.part").write_bytes(handler.payload[:1000])
    result = run_script("dogops", "data", "dogimages", "--out", out, "--url", url, check=True)
    assert "resuming download" in result.stderr and "verified" in result.stderr
    assert (out / "dogImages" / "train" / "001.Affenpinscher").is_dir()


def test_corrupt_download_is_rejected_and_removed(server, tmp_path):
    url, handler = server
    out = tmp_path / "out"
    out.mkdir()
    (out / "dogImages.zip.part").write_bytes(b"\0" * 1000)
    result = run_script("dogops", "data", "dogimages", "--out", out, "--url", url)
    assert result.returncode == 1 and "does not match" in result.stderr
    assert not (out / "dogImages.zip.part").exists()


def test_sha256_pin_is_checked(server, tmp_path):
    url, _ = server
    result = run_script("dogops", "data", "dogimages", "--out", tmp_path / "out", "--url", url, "--sha256", "0" * 64)
    assert result.returncode == 1 and "does not match sha256" in result.stderr


def test_offline_fails_fast_with_a_clear_message(tmp_path):
    started = time.monotonic()
    result = run_script("dogops", "data", "dogimages", "--out", tmp_path, "--url",
                        "http://127.0.0.1:9/dogImages.zip")
    assert result.returncode == 1
    assert "needs internet access" in result.stderr and "dogops data synthetic" in result.stderr
    assert time.monotonic() - started < 30
