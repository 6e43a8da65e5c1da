"""The prediction function (``dogops/function/lambda_function.py``), called as Lambda calls it, against
SageMaker Runtime's wire.

The function's own boto3 client reaches the endpoint through
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, as on the local stack. Behind it stands a
loopback HTTP server that answers in SageMaker Runtime's format (200 top-k,
424 ``ModelError``, 400 ``ValidationError``, 503), the endpoint name choosing
the answer, and that records what the function sent.
"""

import base64
import importlib.util
import json
import time
import types
from http.server import BaseHTTPRequestHandler

import boto3
import pytest
from botocore.config import Config

from dogops.lambda_package import SOURCE

from ..conftest import free_port
from .processes import LoopbackServer

TOPK = "application/vnd.dogops.topk+json"
PREDICTIONS = [{"rank": r, "breed": f"Breed {r}", "class": f"00{r}.Breed_{r}", "index": r - 1,
                "probability": p, "log_probability": lp}
               for r, p, lp in [(1, 0.6, -0.5108), (2, 0.2, -1.6094), (3, 0.1, -2.3026), (4, 0.05, -2.9957),
                                (5, 0.02, -3.912)]]
FETCH_REFUSED = {"error": "url_fetch_failed", "message": "http://169.254.169.254/ resolves to a blocked address"}
CONTEXT = types.SimpleNamespace(aws_request_id="8f5e2c1a-request")


def _model_error(original_status: int, original_message: str) -> tuple[int, dict, dict]:
    kind = "client" if 400 <= original_status < 500 else "server"
    return 424, {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/"}, {
        "Message": f'Received {kind} error ({original_status}) from primary with message "{original_message}".',
        "OriginalStatusCode": original_status, "OriginalMessage": original_message,
        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"}


ANSWERS = {  # endpoint name -> (status, headers, JSON body)
    "ok": (200, {"Content-Type": TOPK, "x-Amzn-Invoked-Production-Variant": "AllTraffic"},
           {"predictions": PREDICTIONS}),
    "refuses": _model_error(400, json.dumps(FETCH_REFUSED)),
    "refuses-plain": _model_error(415, "unsupported"),
    "crashes": _model_error(500, "Internal Server Error"),
    "hangs": _model_error(0, "Your invocation timed out while waiting for a response from container primary."),
    "missing": (400, {"x-amzn-ErrorType": "ValidationError"},
                {"Message": "Endpoint missing of account 123456789012 not found."}),
    "busy": (503, {"x-amzn-ErrorType": "ServiceUnavailable"}, {"Message": "Try your call again"}),
    "garbled": (200, {"Content-Type": TOPK}, {"something": "else"}),
}


class Runtime(LoopbackServer):
    """SageMaker Runtime's ``InvokeEndpoint`` on loopback, recording ``(endpoint, headers, body)`` per request."""

    def __init__(self):
        self.calls: list[tuple[str, dict, bytes]] = []
        super().__init__(RuntimeHandler)


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        endpoint = self.path.split("/")[2]
        self.server.calls.append((endpoint, {k.lower(): v for k, v in self.headers.items()}, body))
        if endpoint == "slow":
            time.sleep(3)
        status, headers, document = ANSWERS.get(endpoint, ANSWERS["ok"])
        reply = json.dumps(document).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("x-amzn-RequestId", "4b3c1d2e-0000-4000-8000-000000000000")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def load_function(monkeypatch, runtime_url: str):
    """A fresh import of the function's module, with the environment a Lambda worker of the local stack has."""
    for key, value in {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url, "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "ENDPOINT_NAME": "ok"}.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("lambda_function", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runtime():
    server = Runtime()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def function(monkeypatch, runtime):
    runtime.calls.clear()
    return load_function(monkeypatch, runtime.url)


def call(function, event, context=CONTEXT) -> tuple[int, dict]:
    answer = function.lambda_handler(event, context)
    assert answer["headers"] == {"Content-Type": "application/json"}
    json.dumps(answer)  # what Lambda's runtime must be able to marshal
    return answer["statusCode"], json.loads(answer["body"])


def proxy_event(body: str | None, base64_encoded: bool = False, content_type: str = "application/json") -> dict:
    """An API Gateway REST (v1) Lambda proxy event for ``POST /predict``."""
    return {"resource": "/predict", "path": "/predict", "httpMethod": "POST",
            "headers": {"Content-Type": content_type}, "multiValueHeaders": {"Content-Type": [content_type]},
            "queryStringParameters": None, "body": body, "isBase64Encoded": base64_encoded,
            "requestContext": {"requestId": "r-1", "stage": "local", "identity": {"sourceIp": "127.0.0.1"}}}


JPEG = b"\xff\xd8\xff\xe0 not really a photo, the model is not involved here"
URL = "https://images.example.com/dogs/rex.jpg?size=large"


def test_a_url_is_sent_as_json_and_the_top_5_come_back(function, runtime):
    status, body = call(function, {"url": URL})
    assert status == 200
    assert body == {"endpoint": "ok", "predictions": [
        {k: p[k] for k in ("rank", "breed", "probability", "log_probability")} for p in PREDICTIONS]}
    [(endpoint, headers, sent)] = runtime.calls
    assert endpoint == "ok" and json.loads(sent) == {"url": URL}
    assert headers["content-type"] == "application/json" and headers["accept"] == TOPK
    assert headers["x-amzn-sagemaker-custom-attributes"] == "top_k=5"


@pytest.mark.parametrize("encoded", [base64.b64encode(JPEG).decode(),
                                     "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()])
def test_a_base64_image_is_sent_as_its_bytes(function, runtime, encoded):
    status, _ = call(function, {"image": encoded})
    assert status == 200
    [(_, headers, sent)] = runtime.calls
    assert sent == JPEG and headers["content-type"] == "application/x-image"


@pytest.mark.parametrize("event", [
    proxy_event(json.dumps({"url": URL})),
    proxy_event(base64.b64encode(json.dumps({"url": URL}).encode()).decode(), base64_encoded=True),
    proxy_event(base64.b64encode(JPEG).decode(), base64_encoded=True, content_type="image/jpeg"),
], ids=["json-body", "base64-json-body", "binary-image-body"])
def test_api_gateway_proxy_events(function, runtime, event):
    status, body = call(function, event)
    assert status == 200 and len(body["predictions"]) == 5
    [(_, headers, sent)] = runtime.calls
    assert sent == (JPEG if headers["content-type"] == "application/x-image" else json.dumps({"url": URL}).encode())


@pytest.mark.parametrize("event", [
    {}, {"url": "ftp://example.com/dog.jpg"}, {"url": "not a url"}, {"url": 7}, {"url": ""}, {"url": "http://"},
    {"url": "http://example.com:99999/dog.jpg"}, {"url": "http://[::1/dog.jpg"},
    {"url": "https://example.com/" + "d" * 2048}, {"image": "%%% not base64"}, {"image": ""}, {"image": 5},
    {"url": URL, "image": base64.b64encode(JPEG).decode()}, [URL], URL, None,
    {"image": base64.b64encode(b"\0" * 4_500_001).decode()},
    proxy_event(None), proxy_event("not json"), proxy_event("[1, 2]"), proxy_event(json.dumps({"url": "file:///etc"})),
    proxy_event("%%%", base64_encoded=True), proxy_event("", base64_encoded=True, content_type="image/jpeg"),
], ids=lambda event: json.dumps(event)[:60])
def test_bad_input_is_a_400_with_a_message_and_never_reaches_the_endpoint(function, runtime, event):
    status, body = call(function, event)
    assert status == 400 and body["message"] and body["requestId"] == CONTEXT.aws_request_id
    assert runtime.calls == []


def test_an_image_just_under_the_limit_is_sent(function, runtime):
    status, _ = call(function, {"image": base64.b64encode(b"\0" * 4_500_000).decode()})
    assert status == 200 and len(runtime.calls[0][2]) == 4_500_000


@pytest.mark.parametrize("endpoint, message", [
    ("refuses", FETCH_REFUSED["message"]),  # the container's JSON error: its message
    ("refuses-plain", "unsupported"),
])
def test_input_the_model_refuses_is_a_400_with_the_containers_message(function, runtime, monkeypatch, endpoint,
                                                                       message):
    monkeypatch.setenv("ENDPOINT_NAME", endpoint)
    status, body = call(function, {"url": "http://169.254.169.254/"})
    assert (status, body["message"]) == (400, message)
    assert len(runtime.calls) == 1, "a ModelError is not retried"


@pytest.mark.parametrize("endpoint, words, attempts", [
    ("crashes", "failed (status 500)", 1),
    ("hangs", "timed out", 1),
    ("missing", "unavailable (ValidationError)", 1),
    ("busy", "unavailable (ServiceUnavailable)", 2),  # retried once, then given up
    ("garbled", "unexpected format", 1),
])
def test_endpoint_failures_are_a_502(function, runtime, monkeypatch, endpoint, words, attempts):
    monkeypatch.setenv("ENDPOINT_NAME", endpoint)
    status, body = call(function, {"url": URL})
    assert status == 502 and endpoint in body["message"] and words in body["message"]
    assert "123456789012" not in body["message"], "no account details to the caller"
    assert len(runtime.calls) == attempts


def test_a_read_timeout_is_a_502_after_one_retry(function, runtime, monkeypatch):
    monkeypatch.setattr(function, "runtime", boto3.client("sagemaker-runtime", config=Config(
        read_timeout=1, retries={"mode": "standard", "total_max_attempts": 2})))
    monkeypatch.setenv("ENDPOINT_NAME", "slow")
    started = time.monotonic()
    status, body = call(function, {"url": URL})
    assert status == 502 and "could not be reached (ReadTimeoutError)" in body["message"]
    assert len(runtime.calls) == 2 and time.monotonic() - started < 10


def test_the_function_keeps_its_configured_timeouts_and_retries(function):
    config = function.runtime.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 65)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_an_unreachable_endpoint_is_a_502(monkeypatch):
    function = load_function(monkeypatch, f"http://127.0.0.1:{free_port()}")
    status, body = call(function, {"url": URL})
    assert status == 502 and "could not be reached (EndpointConnectionError)" in body["message"]


def test_without_endpoint_name_the_function_says_it_is_misconfigured(function, runtime, monkeypatch):
    monkeypatch.delenv("ENDPOINT_NAME")
    status, body = call(function, {"url": URL}, context=None)
    assert status == 500 and "ENDPOINT_NAME" in body["message"] and "requestId" not in body
    assert runtime.calls == []
