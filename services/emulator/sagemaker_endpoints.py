"""The emulator's table of hosted endpoints: where the gateway sends ``InvokeEndpoint`` for an endpoint whose
model runs in its own container (``services.hosting``). In memory, like the rest of the emulator's state.

    PUT    /_dogops/hosting/<region>/<endpoint>   {"url": ..., "container": ...}   register (replaces)
    GET    /_dogops/hosting/<region>/<endpoint>   that entry, or 404 (also once the endpoint is deleted)
    DELETE /_dogops/hosting/<region>/<endpoint>   drop it
    GET    /_dogops/hosting                       {"routes": [{"region", "endpoint", "url", "container"}]}
"""

import json
import threading

from werkzeug.wrappers import Request, Response

from . import stack

PREFIX = "/_dogops/hosting"
CACHE_SECONDS = 2.0  # how long the gateway reuses an answer; an old container must outlive it

_routes: dict[tuple[str, str], dict] = {}
_lock = threading.Lock()


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _endpoint_exists(region: str, name: str) -> bool:
    from moto.sagemaker.models import sagemaker_backends

    try:
        return name in sagemaker_backends[stack.ACCOUNT][region].endpoints
    except KeyError:  # an unknown region
        return False


def handle(request: Request) -> Response:
    """Answer one request under ``PREFIX``."""
    parts = [p for p in request.path[len(PREFIX):].split("/") if p]
    if not parts and request.method == "GET":
        with _lock:
            routes = [{"region": r, "endpoint": e, **entry} for (r, e), entry in sorted(_routes.items())]
        return _json(200, {"routes": routes})
    if len(parts) != 2:
        return _json(404, {"error": "not found"})
    key = (parts[0], parts[1])
    if request.method == "PUT":
        try:
            entry = json.loads(request.get_data())
            entry = {"url": str(entry["url"]).rstrip("/"), "container": str(entry.get("container", ""))}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _json(400, {"error": f"bad request: {exc!r}"})
        if not _endpoint_exists(*key):
            return _json(404, {"error": f"no endpoint {key[1]} in {key[0]}"})
        with _lock:
            _routes[key] = entry
        return _json(200, entry)
    if request.method == "DELETE":
        with _lock:
            _routes.pop(key, None)
        return Response(status=204)
    if request.method == "GET":
        with _lock:
            entry = _routes.get(key)
        if entry is not None and not _endpoint_exists(*key):  # deleted (DeleteEndpoint, a stack's deletion)
            with _lock:
                _routes.pop(key, None)
            entry = None
        return _json(200, entry) if entry else _json(404, {"error": "not hosted"})
    return _json(405, {"error": "method not allowed"})
