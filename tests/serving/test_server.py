"""Real HTTP against a running `serve`: the SageMaker hosting contract and hostile input."""

import io
import math
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from .conftest import encode


def _log_probs(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    values = response.json()
    assert isinstance(values, list) and len(values) == 1 and len(values[0]) == 10
    assert math.isclose(sum(math.exp(v) for v in values[0]), 1.0, rel_tol=1e-4)
    return values[0]


def test_ping_is_200_with_an_empty_body(server):
    response = requests.get(server.url + "/ping", timeout=2)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image", "application/octet-stream",
                                          "image/jpeg; charset=binary"])
def test_image_bytes_answer_log_probabilities_of_every_class(server, sample, content_type):
    body, label = sample
    values = _log_probs(server.invoke(body, content_type, Accept="application/json"))
    assert max(range(10), key=values.__getitem__) == label


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html, application/json;q=0.9"])
def test_default_and_json_accept_give_the_original_shape(server, sample, accept):
    headers = {"Accept": accept} if accept else {}
    _log_probs(server.invoke(sample[0], **headers))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_every_image_mode_works(server, sample, mode):
    image = Image.open(io.BytesIO(sample[0])).convert(mode)
    fmt = "JPEG" if mode in ("L", "CMYK", "1") else "PNG"
    _log_probs(server.invoke(encode(image, fmt), "image/png" if fmt == "PNG" else "image/jpeg"))


def test_exif_rotated_photo_is_turned_upright(server, sample):
    image = Image.open(io.BytesIO(sample[0])).rotate(90, expand=True)  # stored sideways...
    exif = image.getexif()
    exif[0x0112] = 6  # ...and tagged "rotate 90 on display"
    upright = _log_probs(server.invoke(sample[0]))
    rotated = _log_probs(server.invoke(encode(image, "JPEG", exif=exif, quality=95)))
    assert max(range(10), key=rotated.__getitem__) == max(range(10), key=upright.__getitem__)


def test_top_k_by_accept_type_and_by_custom_attributes(server, sample):
    by_accept = server.invoke(sample[0], Accept="application/vnd.dogops.topk+json")
    assert by_accept.status_code == 200
    assert by_accept.headers["Content-Type"] == "application/vnd.dogops.topk+json"
    top = by_accept.json()["predictions"]
    assert len(top) == 5 and top[0]["class"] == "004.Akita" and top[0]["breed"] == "Akita"
    assert [t["rank"] for t in top] == [1, 2, 3, 4, 5]
    assert top[0]["probability"] >= top[1]["probability"]
    by_attribute = server.invoke(sample[0], **{"X-Amzn-SageMaker-Custom-Attributes": "trace=1,top_k=2"})
    assert by_attribute.headers["Content-Type"] == "application/json"
    assert [t["class"] for t in by_attribute.json()["predictions"]] == [t["class"] for t in top[:2]]


def test_unknown_headers_are_ignored(server, sample):
    _log_probs(server.invoke(sample[0], **{"X-Amzn-Foo": "bar", "X-Amzn-SageMaker-Inference-Id": "abc"}))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG that claims width x height pixels but carries almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


HOSTILE = [
    ("garbage bytes", b"\x00\x01 definitely not an image", "image/jpeg", {}, 400, "bad_request"),
    ("empty body", b"", "image/jpeg", {}, 400, "bad_request"),
    ("decompression bomb", _png_header_only(30000, 30000), "image/png", {}, 400, "bad_request"),
    ("bomb past PIL's own limit", _png_header_only(60000, 60000), "image/png", {}, 400, "bad_request"),
    ("malformed JSON", b'{"url": ', "application/json", {}, 400, "bad_request"),
    ("JSON without url", b'{"uri": "https://x"}', "application/json", {}, 400, "bad_request"),
    ("JSON that is a list", b'["https://x"]', "application/json", {}, 400, "bad_request"),
    ("JSON not UTF-8", b'{"url": "\xff\xfe"}', "application/json", {}, 400, "bad_request"),
    ("url not a string", b'{"url": 42}', "application/json", {}, 400, "bad_request"),
    ("unsupported content type", b"hello", "text/plain", {}, 415, "unsupported_media_type"),
    ("form content type", b"a=b", "application/x-www-form-urlencoded", {}, 415, "unsupported_media_type"),
    ("unsupported accept", None, "image/jpeg", {"Accept": "text/csv"}, 406, "not_acceptable"),
    ("bad top_k", None, "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": "top_k=lots"}, 400, "bad_request"),
]


@pytest.mark.parametrize("name,body,content_type,headers,status,code", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_a_clear_json_error(server, sample, name, body, content_type, headers, status, code):
    response = server.invoke(sample[0] if body is None else body, content_type, **headers)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()
    assert error["error"] == code and error["message"] and "Traceback" not in response.text


def test_truncated_image_is_a_400(server, sample):
    response = server.invoke(sample[0][: len(sample[0]) // 2])
    assert response.status_code == 400 and "not a decodable image" in response.json()["message"]


def test_body_over_6_mib_is_a_413(server):
    response = server.invoke(b"\xff" * (6 * 1024 * 1024 + 1))
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_chunked_body_over_6_mib_is_a_413(server):
    def chunks():
        for _ in range(7):
            yield b"\0" * (1024 * 1024)
    response = requests.post(server.url + "/invocations", data=chunks(), headers={"Content-Type": "image/jpeg"},
                             timeout=60)
    assert response.status_code == 413


def test_unknown_routes_and_methods_are_json_errors(server):
    missing = requests.get(server.url + "/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = requests.get(server.url + "/invocations", timeout=5)
    assert wrong.status_code == 405 and "message" in wrong.json()


def test_execution_parameters(server):
    params = requests.get(server.url + "/execution-parameters", timeout=5).json()
    assert params["MaxPayloadInMB"] == 6 and params["BatchStrategy"] == "SINGLE_RECORD"
    assert params["MaxConcurrentTransforms"] >= 1


def test_a_burst_of_concurrent_requests_all_succeed_and_ping_stays_healthy(server, sample):
    bodies = [sample[0]] * 24 + [b"junk"] * 8
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda b: server.invoke(b).status_code, bodies))
        pings = list(pool.map(lambda _: requests.get(server.url + "/ping", timeout=2).status_code, range(8)))
    assert statuses == [200] * 24 + [400] * 8
    assert pings == [200] * 8


def test_openapi_document_is_served(server):
    spec = requests.get(server.url + "/openapi.json", timeout=5).json()
    assert {"/ping", "/invocations"} <= set(spec["paths"])
