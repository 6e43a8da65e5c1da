"""The WSGI guard in front of every port of the stack (emulator, gateway with its page and function URLs), run
before anything else answers, as LocalStack checks origins before its handlers:

- ``Host`` must name this machine (a loopback name or address, ``*.localhost``) or a service of the stack
  (compose's ``emulator``, ``gateway``, ``serving``, ``registry``; more in ``DOGOPS_ALLOWED_HOSTS``), so a DNS
  rebinding page never reaches it;
- a request from a web page (``Origin``, else ``Referer``; or ``Sec-Fetch-Site: cross-site``) must come from the
  origin it is sent to (the demo page calling its own gateway), or one of ``DOGOPS_ALLOWED_ORIGINS``
  (comma-separated), else 403. Function URLs (``/lambda-url/``) decide by the function's
  own CORS configuration, as AWS does;
- moto's ``/moto-api/`` (reset, dashboard, recorder) answers 404 unless ``DOGOPS_MOTO_API=1``;
- no ``Access-Control-*`` header of what is behind it reaches the browser (moto answers every origin with ``*``);
- then ``check`` (SigV4, by the caller) runs before the application.
"""

import io
import ipaddress
import json
import os
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from werkzeug.wrappers import Request, Response

STACK_HOSTS = {"localhost", "emulator", "gateway", "serving", "registry"}
FUNCTION_URLS = "/lambda-url/"
RECEIVED = "dogops.received"  # environ key: time.perf_counter() when the guard got the request


def _listed(name: str) -> set[str]:
    return {item.strip().rstrip("/") for item in os.environ.get(name, "").split(",") if item.strip()}


def origin_allowed(request: Request, origin: str) -> bool:
    """Whether a web origin may call: the request's own (same-origin, ``Host`` being checked first) or one of
    ``DOGOPS_ALLOWED_ORIGINS``."""
    return origin == f"{request.scheme}://{request.host}" or origin in _listed("DOGOPS_ALLOWED_ORIGINS")


def host_allowed(host: str) -> bool:
    """Whether a ``Host`` header names this machine or a service of the stack."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower().rstrip(".")
    if name in STACK_HOSTS or name.endswith(".localhost") or name in _listed("DOGOPS_ALLOWED_HOSTS"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def web_origin(request: Request) -> str | None:
    """The origin a browser says the request comes from (``Origin``, else ``Referer``'s), None for other clients."""
    origin = request.headers.get("Origin")
    if origin is None and request.headers.get("Referer"):
        parts = urlsplit(request.headers["Referer"])
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.rstrip("/") if origin is not None else None


def raw_uri(environ) -> str:
    """The request target as the client sent it (what it signed), not werkzeug's decoded path."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw
    query = environ.get("QUERY_STRING")
    return quote(environ.get("PATH_INFO", "")) + (f"?{query}" if query else "")


def read_body(request: Request) -> bytes:
    """The whole body, read once and put back for the application behind."""
    body = request.get_data()
    environ = request.environ
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body


def _refuse(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, content_type="application/json")


class Guard:
    """``app`` behind the checks above; ``check`` (a werkzeug request -> refusal or None) runs last;
    ``function_urls``: whether ``app`` serves function URLs (the gateway), which decide web origins themselves
    (elsewhere, as on the emulator, ``/lambda-url/`` is a path like any other: an S3 bucket's)."""

    def __init__(self, app, check: Callable[[Request], Response | None] | None = None, function_urls: bool = True):
        self.app, self.check, self.function_urls = app, check, function_urls

    def refusal(self, request: Request) -> Response | None:
        if not host_allowed(request.host):
            return _refuse(403, f"host {request.host!r} is not this stack's (DNS rebinding?); "
                           "DOGOPS_ALLOWED_HOSTS adds names")
        if request.path.startswith("/moto-api") and os.environ.get("DOGOPS_MOTO_API") != "1":
            return _refuse(404, "not found (moto's /moto-api/ is off; DOGOPS_MOTO_API=1 turns it on for debugging)")
        if self.function_urls and request.path.startswith(FUNCTION_URLS):
            return None  # the function's CORS configuration decides (services.gateway.function_url)
        origin = web_origin(request)
        if origin is not None and not origin_allowed(request, origin):
            return _refuse(403, f"requests from the web origin {origin!r} are refused; "
                           "DOGOPS_ALLOWED_ORIGINS adds origins")
        if origin is None and request.headers.get("Sec-Fetch-Site") == "cross-site":
            return _refuse(403, "cross-site requests are refused")
        return None

    def __call__(self, environ, start_response):
        environ.setdefault(RECEIVED, time.perf_counter())  # when the request came in (SageMaker's OverheadLatency)
        request = Request(environ)
        refusal = self.refusal(request)
        if refusal is None and self.check:
            refusal = self.check(request)
        if refusal is not None:
            return refusal(environ, start_response)
        if self.function_urls and request.path.startswith(FUNCTION_URLS):
            return self.app(environ, start_response)

        def without_cors(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return self.app(environ, without_cors)
