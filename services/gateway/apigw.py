"""An API route shaped like API Gateway's Lambda proxy integration (REST API), the demo page, and sample photos.

    POST /predict          the request as a proxy event → Lambda ``settings.FUNCTION_NAME`` → its proxy answer
    GET  /                 the demo page (``static/``)
    GET  /page/<file>      the page's script and style (``GET /page/metrics``: its live panel, ``panel``)
    GET  /samples          {"samples": [{"name", "url"}]}: the photos of ``DOGOPS_SAMPLES_DIR``
    GET  /samples/<name>   one of them, for the serving container to fetch by URL

``POST /predict`` takes ``application/json`` or a photo (``image/jpeg``, ``image/png``), so no web page can send
it a cross-site "simple" request (``text/plain``, forms): 415 otherwise; a foreign web origin is refused before
(``services.security.guard``).

Settings: ``DOGOPS_API_KEY`` (when set, ``x-api-key`` must match it), ``DOGOPS_INTEGRATION_TIMEOUT``
(seconds, default 29 as on API Gateway; at most ``POOL`` invocations run at once, past that 429 "Too Many
Requests"), ``DOGOPS_SAMPLES_DIR`` and ``DOGOPS_SAMPLES_URL`` (where the serving
container finds the samples; default this gateway's ``/samples``).
"""

import base64
import binascii
import hmac
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_from_directory
from werkzeug.datastructures import Headers

from ..stack import settings

blueprint = Blueprint("apigw", __name__)

STATIC = Path(__file__).with_name("static")
SAMPLE_TYPES = (".jpg", ".jpeg", ".png")
PREDICT_TYPES = ("application/json", "image/jpeg", "image/png")
POOL = 64  # invocations outlive a 504, as on AWS: at most this many at once, none waiting for a thread
_pool = ThreadPoolExecutor(max_workers=POOL, thread_name_prefix="apigw")
_running = threading.BoundedSemaphore(POOL)


def _message(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, content_type="application/json",
                    headers={"x-amzn-RequestId": str(uuid.uuid4())})


def proxy_event(body: bytes, request_id: str) -> dict:
    """The current request as API Gateway (REST API, v1 payload) hands it to a Lambda proxy integration."""
    try:
        text, encoded = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": "/predict", "path": request.path, "httpMethod": request.method,
        "headers": dict(request.headers.items()),
        "multiValueHeaders": {key: request.headers.getlist(key) for key in request.headers.keys()},
        "queryStringParameters": {key: values[-1] for key, values in request.args.lists()} or None,
        "multiValueQueryStringParameters": request.args.to_dict(flat=False) or None,
        "pathParameters": None, "stageVariables": None, "body": text, "isBase64Encoded": encoded,
        "requestContext": {
            "resourcePath": "/predict", "httpMethod": request.method, "path": "/local" + request.path,
            "stage": "local", "requestId": request_id, "requestTimeEpoch": int(time.time() * 1000),
            "accountId": settings.ACCOUNT, "apiId": "local", "protocol": request.environ.get("SERVER_PROTOCOL"),
            "identity": {"sourceIp": request.remote_addr, "apiKey": request.headers.get("x-api-key"),
                         "userAgent": request.headers.get("User-Agent")}},
    }


def proxy_response(status: int, headers: dict, body: bytes) -> Response:
    """The function's answer as API Gateway relays it: its proxy result, or the gateway's own error."""
    headers = {key.lower(): value for key, value in headers.items()}
    if status == 429:
        return _message(429, "Too Many Requests")
    if status != 200 or "x-amz-function-error" in headers:
        return _message(502 if status == 200 else 500, "Internal server error")
    try:
        result = json.loads(body)
        code = int(result["statusCode"])
        payload = result.get("body") or ""
        data = base64.b64decode(payload, validate=True) if result.get("isBase64Encoded") else payload.encode()
        relayed = Headers(result.get("headers") or {})
        for key, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                relayed.add(key, value)
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):  # a malformed proxy response
        return _message(502, "Internal server error")
    relayed.setdefault("Content-Type", "application/json")
    relayed["x-amzn-RequestId"] = str(uuid.uuid4())
    return Response(data, code, headers=relayed)


def api_key_refusal() -> Response | None:
    """403 when ``DOGOPS_API_KEY`` is set and the request's ``x-api-key`` is not it."""
    key = os.environ.get("DOGOPS_API_KEY")
    if key and not hmac.compare_digest(request.headers.get("x-api-key", "").encode(), key.encode()):
        return _message(403, "Forbidden")
    return None


@blueprint.post("/predict")
def predict() -> Response:
    refusal = api_key_refusal()
    if refusal is not None:
        return refusal
    if request.mimetype not in PREDICT_TYPES:
        return _message(415, f"Unsupported Media Type {request.mimetype or '(none)'}: POST /predict takes "
                        + ", ".join(PREDICT_TYPES))
    from . import lambda_api

    payload = json.dumps(proxy_event(request.get_data(), str(uuid.uuid4()))).encode()
    if not _running.acquire(blocking=False):
        return _message(429, "Too Many Requests")  # API Gateway's throttling answer
    future = _pool.submit(lambda_api.invoke, settings.FUNCTION_NAME, payload)
    future.add_done_callback(lambda _: _running.release())
    try:
        status, headers, body = future.result(timeout=float(os.environ.get("DOGOPS_INTEGRATION_TIMEOUT", "29")))
    except FutureTimeout:
        return _message(504, "Endpoint request timed out")
    return proxy_response(status, headers, body)


@blueprint.get("/")
def page() -> Response:
    return send_from_directory(STATIC, "index.html")


@blueprint.get("/page/<name>")
def page_asset(name: str) -> Response:
    return send_from_directory(STATIC, name)


def _samples_dir() -> Path:
    folder = os.environ.get("DOGOPS_SAMPLES_DIR")
    if not folder or not Path(folder).is_dir():
        abort(404)
    return Path(folder)


@blueprint.get("/samples")
def samples() -> dict:
    base = os.environ.get("DOGOPS_SAMPLES_URL") or request.url_root + "samples"
    names = sorted(p.name for p in _samples_dir().iterdir() if p.suffix.lower() in SAMPLE_TYPES)
    return {"samples": [{"name": name, "url": f"{base.rstrip('/')}/{name}"} for name in names]}


@blueprint.get("/samples/<name>")
def sample(name: str) -> Response:
    return send_from_directory(_samples_dir(), name)
