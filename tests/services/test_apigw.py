"""``POST /predict`` as API Gateway's Lambda proxy integration, with real functions run by the gateway:
the event the function gets, the proxy answer relayed, the gateway's own errors, the API key, and /samples."""

import base64
import json

import pytest
import requests

from . import processes

FUNCTION = '''
import base64
import json
import time


def handler(event, context):
    mode = (event["queryStringParameters"] or {}).get("mode", "event")
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "malformed":
        return ["not", "a", "proxy", "answer"]
    if mode == "sleep":
        time.sleep(3)
    if mode == "binary":
        return {"statusCode": 201, "headers": {"Content-Type": "image/png", "X-One": "1"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": base64.b64encode(b"\\x89PNG\\x00").decode(), "isBase64Encoded": True}
    return {"statusCode": 200, "body": json.dumps(event)}
'''


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    proc = processes.emulator(tmp_path_factory.mktemp("logs"))
    processes.deploy_function(proc.url, "apigw", FUNCTION)
    processes.deploy_function(proc.url, "throttled", FUNCTION, concurrency=0)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(emulator):
    """``/predict`` → function ``apigw``, with a 1 s integration timeout."""
    proc = processes.gateway(emulator.log.parent, emulator.url, DOGOPS_FUNCTION_NAME="apigw",
                             DOGOPS_INTEGRATION_TIMEOUT=1, DOGOPS_LOG_DIR=emulator.log.parent)
    # A warm worker first: on a busy machine a cold start alone can pass the 1 s the tests below run within.
    warm = processes.client("lambda", proc.url).invoke(FunctionName="apigw", Payload=b'{"queryStringParameters": null}')
    assert "FunctionError" not in warm, warm["Payload"].read()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keyed(emulator, tmp_path_factory):
    """``/predict`` → function ``throttled`` (reserved concurrency 0) behind an API key; samples served."""
    samples = tmp_path_factory.mktemp("samples")
    (samples / "dog.jpg").write_bytes(b"\xff\xd8 a photo")
    (samples / "notes.txt").write_text("not a photo")
    proc = processes.gateway(emulator.log.parent, emulator.url, DOGOPS_FUNCTION_NAME="throttled",
                             DOGOPS_API_KEY="secret", DOGOPS_SAMPLES_DIR=samples,
                             DOGOPS_SAMPLES_URL="http://gateway:8000/samples/")
    yield proc
    proc.stop()


def post(gateway, query: str = "", **kwargs) -> requests.Response:
    kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
    return requests.post(f"{gateway.url}/predict{query}", timeout=30, **kwargs)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_predict_takes_only_json_or_a_photo(gateway, content_type):
    """What a web page can send cross-site without a preflight is refused before the function runs."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(f"{gateway.url}/predict", data=b'{"url": "https://example.com/dog.jpg"}',
                             headers=headers, timeout=30)
    assert response.status_code == 415 and "application/json" in response.json()["message"]


def assert_message(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": message}


def test_the_function_gets_a_rest_api_proxy_event(gateway):
    response = post(gateway, "?x=1&x=2", data=b'{"url": "https://example.com/dog.jpg"}',
                    headers={"Content-Type": "application/json", "X-Custom": "v"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    event = response.json()
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/predict", "/predict", "POST")
    assert event["body"] == '{"url": "https://example.com/dog.jpg"}' and event["isBase64Encoded"] is False
    assert event["headers"]["X-Custom"] == "v" and event["multiValueHeaders"]["X-Custom"] == ["v"]
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    context = event["requestContext"]
    assert context["stage"] == "local" and context["requestId"]
    assert context["identity"] == {"sourceIp": "127.0.0.1", "apiKey": None, "userAgent": response.request.headers[
        "User-Agent"]}


def test_a_binary_body_arrives_base64_encoded(gateway):
    event = post(gateway, data=b"\xff\xd8\xff\xe0", headers={"Content-Type": "image/jpeg"}).json()
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xd8\xff\xe0"
    assert post(gateway).json()["body"] is None


def test_the_proxy_answer_is_relayed(gateway):
    response = post(gateway, "?mode=binary")
    assert response.status_code == 201
    assert response.content == b"\x89PNG\x00"
    assert response.headers["Content-Type"] == "image/png" and response.headers["X-One"] == "1"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("mode", ["raise", "malformed"])
def test_a_failed_or_malformed_function_is_502(gateway, mode):
    assert_message(post(gateway, f"?mode={mode}"), 502, "Internal server error")


def test_past_the_integration_timeout_is_504(gateway):
    assert_message(post(gateway, "?mode=sleep"), 504, "Endpoint request timed out")


def test_the_api_key_is_required_when_configured(keyed):
    assert_message(post(keyed), 403, "Forbidden")
    assert_message(post(keyed, headers={"x-api-key": "wrong"}), 403, "Forbidden")


def test_a_throttled_function_is_429(keyed):
    assert_message(post(keyed, headers={"x-api-key": "secret"}), 429, "Too Many Requests")


def test_samples_are_listed_and_served(keyed, gateway):
    listing = requests.get(keyed.url + "/samples", timeout=10).json()
    assert listing == {"samples": [{"name": "dog.jpg", "url": "http://gateway:8000/samples/dog.jpg"}]}
    assert requests.get(keyed.url + "/samples/dog.jpg", timeout=10).content == b"\xff\xd8 a photo"
    assert requests.get(keyed.url + "/samples/..%2Fsecret", timeout=10).status_code == 404
    assert requests.get(gateway.url + "/samples", timeout=10).status_code == 404  # no DOGOPS_SAMPLES_DIR


def test_the_page_and_its_assets_are_served(gateway):
    page = requests.get(gateway.url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    for asset in ("page.js", "page.css"):
        assert requests.get(f"{gateway.url}/page/{asset}", timeout=10).status_code == 200
    assert json.loads(requests.get(gateway.url + "/_dogops/health", timeout=10).content) == {"status": "ok"}
