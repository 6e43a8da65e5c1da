"""Admission: a bound on how many requests a server of the stack works on at once, the rest answered at once with
the throttling error of the AWS service called, in that service's protocol, so SDKs back off and retry it as they
do on AWS (botocore's throttling codes, ``botocore.retries.standard.ThrottledRetryableChecker``):

- S3: 503 ``SlowDown`` (XML), as S3 asks a client to reduce its request rate;
- EC2: 503 ``RequestLimitExceeded`` (its XML);
- other query-protocol services (IAM, STS, CloudFormation, ...): 400 ``Throttling``, "Rate exceeded" (XML);
- JSON-protocol services (``X-Amz-Target``: SageMaker, CloudWatch Logs, ...): 400 ``ThrottlingException``;
- Lambda: 429 ``TooManyRequestsException`` with ``Retry-After`` and ``Reason`` ``CallerRateLimitExceeded``;
- other rest-json calls (SageMaker Runtime ``InvokeEndpoint``, Scheduler): 429 ``ThrottlingException``;
- unsigned requests (the gateway's API route): 429 "Too Many Requests", as API Gateway throttles.

The service is read from the request's SigV4 credential scope. Requests are sorted into classes, each with its own
bound (the gateway keeps Lambda invocations, which wait on their functions, apart from the calls those functions
make back through it); a class of None is not counted (the stack's own health and control paths).

``BoundedServer`` bounds werkzeug's thread-per-connection server (the emulator's, the registry's) the same way.
"""

import json
import threading
import uuid
from collections.abc import Callable

from werkzeug.serving import ThreadedWSGIServer
from werkzeug.wrappers import Response
from werkzeug.wsgi import ClosingIterator

from . import sigv4

MESSAGE = "Rate exceeded"


def service(environ) -> str | None:
    """The AWS service a request is signed for (its SigV4 scope), or None when it is not signed (or not well)."""
    headers = {"Authorization": environ.get("HTTP_AUTHORIZATION", ""), "X-Amz-Date": environ.get("HTTP_X_AMZ_DATE", "")}
    try:
        signed = sigv4.parse(headers, environ.get("QUERY_STRING", ""))
    except sigv4.SignatureError:
        return None
    return signed.service if signed else None


def _xml(status: int, body: str) -> Response:
    return Response(body, status, content_type="text/xml")


def throttled(environ) -> Response:
    """The throttling error the AWS service this request is for answers with (see the module's list)."""
    name, rid = service(environ), str(uuid.uuid4())
    form = (environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
            or "Action=" in environ.get("QUERY_STRING", ""))
    if name == "s3":
        response = _xml(503, f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please "
                        f"reduce your request rate.</Message><RequestId>{rid}</RequestId></Error>")
    elif name == "ec2":
        response = _xml(503, f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>"
                        f"RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors>"
                        f"<RequestID>{rid}</RequestID></Response>")
    elif "HTTP_X_AMZ_TARGET" in environ:
        response = Response(json.dumps({"__type": "ThrottlingException", "message": MESSAGE}), 400,
                            content_type=environ.get("CONTENT_TYPE") or "application/x-amz-json-1.1")
    elif form:
        response = _xml(400, f"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>{MESSAGE}"
                        f"</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")
    elif name == "lambda" or environ.get("PATH_INFO", "").startswith("/2015-03-31/functions/"):
        response = Response(json.dumps({"Type": "User", "message": MESSAGE, "Reason": "CallerRateLimitExceeded"}),
                            429, content_type="application/json")
        response.headers["x-amzn-ErrorType"] = "TooManyRequestsException"
        response.headers["Retry-After"] = "1"
    elif name is None:  # unsigned: the API route, answered as API Gateway throttles
        response = Response(json.dumps({"message": "Too Many Requests"}), 429, content_type="application/json")
    else:
        response = Response(json.dumps({"message": MESSAGE}), 429, content_type="application/json")
        response.headers["x-amzn-ErrorType"] = "ThrottlingException"
    response.headers["x-amzn-RequestId"] = rid
    return response


class Admission:
    """``app`` working on at most ``limits[c]`` requests of class ``c`` at once (``classify(environ)`` gives the
    class; None: not counted); a request over its bound gets ``throttled``'s answer without reaching ``app``."""

    def __init__(self, app, limits: dict[str, int], classify: Callable[[dict], str | None]):
        if any(limit < 1 for limit in limits.values()):
            raise ValueError(f"every admission bound must be at least 1: {limits}")
        self.app, self.classify = app, classify
        self.slots = {name: threading.BoundedSemaphore(limit) for name, limit in limits.items()}
        self.throttles = dict.fromkeys(limits, 0)  # how many requests each class turned away

    def __call__(self, environ, start_response):
        kind = self.classify(environ)
        if kind is None:
            return self.app(environ, start_response)
        slots = self.slots[kind]
        if not slots.acquire(blocking=False):
            self.throttles[kind] += 1
            return throttled(environ)(environ, start_response)
        try:
            return ClosingIterator(self.app(environ, start_response), slots.release)
        except BaseException:
            slots.release()
            raise


class BoundedServer(ThreadedWSGIServer):
    """werkzeug's threaded server with at most ``max_connections`` connection threads (at the bound it stops
    accepting, and the kernel's listen backlog holds the next ones) and keep-alive connections closed after
    ``idle_timeout`` seconds without a byte, so idle SDK connection pools cannot hold every thread."""

    def __init__(self, host: str, port: int, app, handler, max_connections: int, idle_timeout: float):
        quiet = type(handler.__name__, (handler,), {"timeout": idle_timeout, "log_error": _log_error})
        self.connections = threading.BoundedSemaphore(max_connections)
        super().__init__(host, port, app, quiet)

    def process_request(self, request, client_address):
        self.connections.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


def _log_error(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
    if not format.startswith("Request timed out"):  # an idle keep-alive connection closed: not an error
        super(type(self), self).log_error(format, *args)
