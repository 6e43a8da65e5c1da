"""The HTTP surface of the SageMaker hosting contract (Flask; gunicorn runs it).

    GET  /ping                  200, empty body, once the model is loaded
    POST /invocations           the handlers' answer
    GET  /execution-parameters  Batch Transform's runtime parameters
    GET  /openapi.json          this surface as OpenAPI 3

Every error is JSON ``{"error", "message"}`` with a 4xx, or a 500 whose
details go to the log and never to the client.
"""

import json
import logging
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .errors import PayloadTooLarge, ServingError
from .handlers import Context, Runtime
from .settings import MAX_PAYLOAD

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).with_name("openapi.json")
DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop up to this much of an oversized body, so the client sees the 413


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json", headers=headers)


def create_app(runtime: Runtime) -> Flask:
    """The WSGI app serving ``runtime``."""
    app = Flask(__name__)

    @app.get("/ping")
    def ping():
        if not runtime.ready:
            return _json(503, {"error": "not_ready", "message": "the model is still loading"})
        return Response(status=200)

    @app.post("/invocations")
    def invocations():
        length = request.content_length
        if length is not None and length > MAX_PAYLOAD:
            _drain(length)
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {MAX_PAYLOAD} bytes (6 MiB)")
        body = request.stream.read(MAX_PAYLOAD + 1)
        if len(body) > MAX_PAYLOAD:
            raise PayloadTooLarge(f"the body is over the limit of {MAX_PAYLOAD} bytes (6 MiB)")
        context = Context(str(runtime.model_dir), request.headers)
        out, out_type = runtime.invoke(body, request.mimetype, request.headers.get("Accept", ""), context)
        return Response(out, status=200, content_type=out_type, headers=context.response_headers)

    @app.get("/execution-parameters")
    def execution_parameters():
        return _json(200, {"MaxConcurrentTransforms": runtime.settings.workers, "BatchStrategy": "SINGLE_RECORD",
                           "MaxPayloadInMB": MAX_PAYLOAD // (1024 * 1024)})

    @app.get("/openapi.json")
    def openapi():
        return Response(OPENAPI.read_bytes(), mimetype="application/json")

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        return _json(exc.status, exc.to_json())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # e.g. Allow on a 405
        return _json(exc.code or 500, {"error": code, "message": exc.description or exc.name}, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("request failed")
        return _json(500, {"error": "internal_error",
                           "message": "the model failed on this request; the server log has the details"})

    return app


def _drain(length: int) -> None:
    """Read an oversized body (up to DRAIN_LIMIT) so the client is not cut off mid-upload."""
    remaining = min(length, DRAIN_LIMIT)
    while remaining > 0:
        chunk = request.stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        remaining -= len(chunk)
