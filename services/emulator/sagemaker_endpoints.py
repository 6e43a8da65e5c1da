"""SageMaker endpoints on moto's server: ``UpdateEndpoint`` (moto answers 500), which rolls the endpoint to a
new config in place (keeping its name and creation time; like moto's ``CreateEndpoint``, ``InService`` at once),
needed to republish a retrained model; and the emulator's table of hosted endpoints: where the gateway sends ``InvokeEndpoint`` for an endpoint whose
model runs in its own container (``services.hosting.endpoints``). In memory, like the rest of the emulator's state.

    PUT    /_dogops/hosting/<region>/<endpoint>   {"url": ..., "container": ...}   register (replaces)
    GET    /_dogops/hosting/<region>/<endpoint>   that entry, or 404 (also once the endpoint is deleted)
    DELETE /_dogops/hosting/<region>/<endpoint>   drop it
    GET    /_dogops/hosting                       {"routes": [{"region", "endpoint", "url", "container"}]}
"""

import json
import threading

from moto.core.responses import ActionResult
from moto.sagemaker.models import FakeEndpoint
from moto.sagemaker.responses import SageMakerResponse
from werkzeug.wrappers import Request, Response

from ..stack import settings

PREFIX = settings.HOSTING_ROUTES

_routes: dict[tuple[str, str], dict] = {}
_lock = threading.Lock()


def roll_endpoint(backend, old: FakeEndpoint, config: str, tags: list) -> FakeEndpoint:
    """Endpoint ``old`` moved to ``config`` in place, as ``UpdateEndpoint`` does on AWS: it keeps its name and
    creation time and never stops existing (one assignment in moto's table)."""
    endpoint = backend.create_endpoint(old.endpoint_name, config, tags)
    endpoint.creation_time = old.creation_time
    return endpoint


def _update_endpoint(self) -> ActionResult:
    """``UpdateEndpoint`` on moto's SageMaker backend: the endpoint, now on the new config."""
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    old = backend.endpoints.get(name)
    if old is None:
        backend.describe_endpoint(name)  # raises moto's ValidationError for an unknown endpoint
    endpoint = roll_endpoint(backend, old, self._get_param("EndpointConfigName"), old.tags)
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = _update_endpoint


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _endpoint_exists(region: str, name: str) -> bool:
    from moto.sagemaker.models import sagemaker_backends

    try:
        return name in sagemaker_backends[settings.ACCOUNT][region].endpoints
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
