"""The registry behind ECR's proxy endpoint, through its guarded relay (``services.stack.registry``): blobs pushed in
chunks and whole come back byte for byte; a foreign ``Host`` (DNS rebinding) or web origin is refused and
uploads nothing. Needs Debian's ``docker-registry`` (CI installs it)."""

import hashlib
import os
import shutil

import pytest
import requests

from services.stack import registry

from ..conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs Debian's docker-registry")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    proc = registry.start(port, root, root / "registry.log")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def _upload(url: str, repository: str, data: bytes, chunked: bool) -> requests.Response:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = requests.post(f"{url}/v2/{repository}/blobs/uploads/", timeout=10).headers["Location"]
    if chunked:  # a generator body: Transfer-Encoding chunked, as Docker streams a layer
        parts = (data[i:i + 65536] for i in range(0, len(data), 65536))
        location = requests.patch(location, data=parts, timeout=30).headers["Location"]
        data = b""
    separator = "&" if "?" in location else "?"
    return requests.put(f"{location}{separator}digest={digest}", data=data, timeout=30,
                        headers={"Content-Type": "application/octet-stream"})


@pytest.mark.parametrize("chunked", [False, True])
def test_blobs_go_through_the_relay_unchanged(url, chunked):
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert _upload(url, "dogops/relay", data, chunked).status_code == 201
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert requests.get(f"{url}/v2/dogops/relay/blobs/{digest}", timeout=30).content == data
    assert requests.head(f"{url}/v2/dogops/relay/blobs/{digest}", timeout=10).headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("headers", [{"Host": "evil.example:5001"}, {"Origin": "http://evil.example"},
                                     {"Referer": "http://evil.example/page"}, {"Sec-Fetch-Site": "cross-site"}])
def test_web_pages_cannot_push(url, headers):
    refused = requests.post(f"{url}/v2/dogops/evil/blobs/uploads/", headers=headers, timeout=10)
    assert refused.status_code == 403 and "Location" not in refused.headers
    assert requests.get(f"{url}/v2/_catalog", timeout=10).json()["repositories"].count("dogops/evil") == 0
