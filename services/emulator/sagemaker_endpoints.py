"""SageMaker endpoints on moto's server: ``UpdateEndpoint`` (moto answers 500), which rolls the endpoint to a
new config in place (keeping its name and creation time), needed to republish a retrained model;
``UpdateEndpointWeightsAndCapacities`` and auto-scaling (:func:`set_instance_count`); hosting; and the
emulator's table of hosted endpoints: where the gateway sends ``InvokeEndpoint``. In memory, like the rest of the
emulator's state.

Instance counts: a variant runs ``InitialInstanceCount`` servers (natively processes, with ``host`` containers).
A new count (``DesiredInstanceCount``) makes the endpoint ``Updating`` until the servers are there, then
``InService`` with ``CurrentInstanceCount`` following, as on AWS (moto set both at once): natively when the
reconciler has them, with ``host`` when the hoster registers a route whose ``instances`` it counts. Weights change
at once. With ``off`` only the counts change.

Hosting (``DOGOPS_HOSTING``): with ``native``, every endpoint moto's backend creates, rolls or deletes (through
the API, an SDK or a CloudFormation stack) is made real by ``services.hosting.reconciler``: a ``serve`` process
per production variant, the endpoint ``Creating``/``Updating`` until they answer ``/ping``, then ``InService``
with its routes in the table below (or ``Failed`` with the reason). With ``host`` (compose: this container has
neither Docker nor a model runtime) the endpoint is ``Creating``/``Updating`` until a hoster outside
(``services.jobs.host_runner``, or ``dogops promote apply``: ``services.hosting.endpoints``) claims its config,
serves it in a container and registers its route with that config (``InService``) or reports a failure
(``Failed``; an update that fails leaves the old route, ``InService`` with the reason). With ``off`` (the default)
an endpoint is only recorded, ``InService`` at once as in moto, and something else registers its route.

    PUT    /_dogops/hosting/<region>/<endpoint>   {"url": ..., "container": ..., "variants": {name: url},
                                                   "instances": {name: [url, ...]}}
                                                  register (replaces; without variants, every variant is at url;
                                                  instances: every server of a variant, requests go to each in turn);
                                                  with "config": the endpoint on that config is InService (host mode)
    POST   /_dogops/hosting/<region>/<endpoint>/claim    {"config": ...} -> {"claimed": bool}: once per config
    POST   /_dogops/hosting/<region>/<endpoint>/failure  {"config": ..., "reason": ...}: it could not be hosted
    GET    /_dogops/hosting/<region>/<endpoint>   that entry, or 404 (also once the endpoint is deleted)
    DELETE /_dogops/hosting/<region>/<endpoint>   drop it
    GET    /_dogops/hosting                       {"routes": [{"region", "endpoint", "url", "container", "variants"}]}
"""

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import AWSValidationException
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.utilities.utils import get_partition
from werkzeug.wrappers import Request, Response

from ..hosting import reconciler
from ..stack import settings

PREFIX = settings.HOSTING_ROUTES

_routes: dict[tuple[str, str], dict] = {}
_claims: set[tuple[str, str, str]] = set()  # (region, endpoint, config) a hoster has taken
_previous: dict[tuple[str, str], FakeEndpoint | None] = {}  # host mode: the state an update rolls back to
_scaling: dict[tuple[str, str], tuple[str, Callable[[int], None]]] = {}  # host mode: (variant, done) till routed
_lock = threading.Lock()


def roll_endpoint(backend, old: FakeEndpoint, config: str, tags: list) -> FakeEndpoint:
    """Endpoint ``old`` moved to ``config`` in place, as ``UpdateEndpoint`` does on AWS: it keeps its name and
    creation time and never stops existing (one assignment in moto's table)."""
    endpoint = backend.create_endpoint(old.endpoint_name, config, tags)
    endpoint.creation_time = old.creation_time
    return endpoint


def _update_endpoint(self) -> ActionResult:
    """``UpdateEndpoint`` on moto's SageMaker backend: the endpoint, now on the new config. Refused, as SageMaker
    refuses it, while an operation is in progress on the endpoint (moto rolled a ``Creating`` one)."""
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    old = backend.endpoints.get(name)
    if old is None:
        backend.describe_endpoint(name)  # raises moto's ValidationError for an unknown endpoint
    if old.endpoint_status in settings.ENDPOINT_IN_PROGRESS:
        raise _in_progress(old)
    endpoint = roll_endpoint(backend, old, self._get_param("EndpointConfigName"), old.tags)
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = _update_endpoint


def _in_progress(endpoint: FakeEndpoint) -> AWSValidationException:
    """SageMaker's refusal of a change to an endpoint that is not in service."""
    return AWSValidationException(f"Cannot update in-progress endpoint \"{endpoint.arn}\".")


def hosting() -> str:
    """``DOGOPS_HOSTING``: ``native`` (a ``serve`` per variant), ``host`` (left to a hoster outside, which
    claims and reports) or ``off`` (recorded only)."""
    value = os.environ.get("DOGOPS_HOSTING", "off")
    if value not in ("native", "host", "off"):
        raise ValueError(f"DOGOPS_HOSTING must be native, host or off, not {value!r}")
    return value


def _fetcher(account: str, region: str):
    """``fetch(s3 url, path)``: an object of this emulator's S3 written to ``path`` (FileNotFoundError if none)."""
    def fetch(url: str, path: Path) -> None:
        parsed = urlparse(url)
        try:
            key = s3_backends[account][get_partition(region)].get_object(parsed.netloc, parsed.path.lstrip("/"))
        except Exception as exc:  # noqa: BLE001 (moto's missing bucket or key errors)
            raise FileNotFoundError(url) from exc
        if key is None:
            raise FileNotFoundError(url)
        path.write_bytes(key.value)
    return fetch


def _variants(backend, config: str) -> list[reconciler.Variant]:
    """The config's production variants, each with its model's primary container."""
    found = []
    for variant in backend.endpoint_configs[config].production_variants:
        model = backend._models.get(variant.get("ModelName"))
        container = (model.primary_container or (model.containers or [{}])[0]) if model else {}
        found.append(reconciler.Variant(
            variant["VariantName"], variant.get("ModelName", ""), container.get("ModelDataUrl", ""),
            {str(k): str(v) for k, v in (container.get("Environment") or {}).items()},
            _fetcher(backend.account_id, backend.region_name), int(variant.get("InitialInstanceCount") or 1)))
    return found


def _publisher(region: str, name: str):
    def publish(variants: dict[str, list[str]] | None) -> None:
        with _lock:
            if variants is None:
                _routes.pop((region, name), None)
            else:
                _routes[(region, name)] = {"url": next(iter(variants.values()))[0], "container": "",
                                           "variants": {v: urls[0] for v, urls in variants.items()},
                                           "instances": variants}
    return publish


def _reporter(backend, endpoint: FakeEndpoint, old: FakeEndpoint | None):
    """``report(status, failure_reason, rolled_back)`` on ``endpoint``, while it is still the endpoint's current
    state; a rolled-back update puts ``old`` back, in service, with the reason."""
    def report(status: str, failure_reason: str | None = None, rolled_back: bool = False) -> None:
        with _lock:
            if backend.endpoints.get(endpoint.endpoint_name) is not endpoint:
                return  # deleted, or updated again since
            target = endpoint
            if rolled_back and old is not None:
                backend.endpoints[endpoint.endpoint_name] = target = old
            target.endpoint_status, target.failure_reason = status, failure_reason
            target.last_modified_time = utcnow()
    return report


_moto_create_endpoint = SageMakerModelBackend.create_endpoint
_moto_delete_endpoint = SageMakerModelBackend.delete_endpoint


def _create_endpoint(self, endpoint_name: str, endpoint_config_name: str, tags: list) -> FakeEndpoint:
    """moto's ``create_endpoint`` (the API's, CloudFormation's, ``UpdateEndpoint``'s), then hosted natively."""
    old = self.endpoints.get(endpoint_name)
    endpoint = _moto_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
    if hosting() == "host":
        endpoint.endpoint_status = "Updating" if old else "Creating"
        with _lock:
            _previous[(self.region_name, endpoint_name)] = old
    elif hosting() == "native":
        endpoint.endpoint_status = "Updating" if old else "Creating"
        reconciler.reconcile((self.account_id, self.region_name, endpoint_name),
                             _variants(self, endpoint_config_name), _reporter(self, endpoint, old),
                             _publisher(self.region_name, endpoint_name), updating=old is not None)
    return endpoint


def _delete_endpoint(self, endpoint_name: str) -> None:
    _moto_delete_endpoint(self, endpoint_name)
    with _lock:
        _routes.pop((self.region_name, endpoint_name), None)
        _previous.pop((self.region_name, endpoint_name), None)
        _scaling.pop((self.region_name, endpoint_name), None)
        _claims.difference_update({c for c in _claims if c[:2] == (self.region_name, endpoint_name)})
    reconciler.remove((self.account_id, self.region_name, endpoint_name),
                      _publisher(self.region_name, endpoint_name))


def set_instance_count(backend, endpoint: FakeEndpoint, variant: str, count: int,
                       done: Callable[[int], None] = lambda serving: None) -> None:
    """``variant`` of ``endpoint`` to ``count`` instances: ``DesiredInstanceCount`` now; the endpoint is
    ``Updating`` until the servers are there (natively the reconciler's, with ``host`` the hoster's route), then
    ``CurrentInstanceCount`` follows (with ``off`` at once); ``done(n)`` then, with how many serve. With ``host``,
    an endpoint routed to a server by hand (compose's own ``serving``: a route without instances) stays as it is:
    ``done`` with its current count."""
    entry = next(v for v in endpoint.production_variants if v["VariantName"] == variant)
    entry["DesiredInstanceCount"] = count
    if hosting() == "off":
        entry["CurrentInstanceCount"] = count
        done(count)
        return
    if hosting() == "host":  # the hoster sees Updating, brings the containers to the count and routes them
        key = (backend.region_name, endpoint.endpoint_name)
        with _lock:
            scalable = bool((_routes.get(key) or {}).get("instances"))
            if scalable:
                _scaling[key] = (variant, done)
                endpoint.endpoint_status = "Updating"
                endpoint.last_modified_time = utcnow()
        if not scalable:
            done(int(entry.get("CurrentInstanceCount") or 1))
        return
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = utcnow()

    def scaled(serving: int) -> None:
        with _lock:
            if backend.endpoints.get(endpoint.endpoint_name) is not endpoint:
                return  # deleted, or updated since
            if serving:
                entry["CurrentInstanceCount"] = serving
            endpoint.endpoint_status = "InService"
            endpoint.last_modified_time = utcnow()
        done(serving)

    reconciler.scale((backend.account_id, backend.region_name, endpoint.endpoint_name), variant, count,
                     _publisher(backend.region_name, endpoint.endpoint_name), scaled)


def _update_weights_and_capacities(self, endpoint_name: str, desired_weights_and_capacities: list[dict]) -> str:
    """``UpdateEndpointWeightsAndCapacities`` as SageMaker does it: only an endpoint in service, each variant named
    once and in the endpoint; weights at once, instance counts through :func:`set_instance_count` (moto set both
    counts at once and wrote None over what the request left out)."""
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        raise AWSValidationException(f'Could not find endpoint "{FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)}".')
    if endpoint.endpoint_status != "InService":
        raise _in_progress(endpoint)
    names = [change.get("VariantName") for change in desired_weights_and_capacities]
    known = {v["VariantName"] for v in endpoint.production_variants}
    for name in names:
        if names.count(name) > 1:
            raise AWSValidationException(f'The variant name "{name}" was non-unique within the request.')
        if name not in known:
            raise AWSValidationException(f'The variant name(s) "{name}" is/are not present within endpoint '
                                         f'configuration "{endpoint.endpoint_config_name}".')
    for change in desired_weights_and_capacities:
        entry = next(v for v in endpoint.production_variants if v["VariantName"] == change["VariantName"])
        if change.get("DesiredWeight") is not None:
            entry["DesiredWeight"] = entry["CurrentWeight"] = float(change["DesiredWeight"])
        if change.get("DesiredInstanceCount") is not None:
            set_instance_count(self, endpoint, change["VariantName"], int(change["DesiredInstanceCount"]))
    return endpoint.arn


SageMakerModelBackend.create_endpoint = _create_endpoint
SageMakerModelBackend.delete_endpoint = _delete_endpoint
SageMakerModelBackend.update_endpoint_weights_and_capacities = _update_weights_and_capacities


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _backend(region: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[settings.ACCOUNT][region]


def _endpoint_exists(region: str, name: str) -> bool:
    try:
        return name in _backend(region).endpoints
    except KeyError:  # an unknown region
        return False


def _current(key: tuple[str, str], config: str) -> FakeEndpoint | None:
    """The endpoint while it is on ``config`` (else None: deleted, or updated since)."""
    endpoint = _backend(key[0]).endpoints.get(key[1]) if _endpoint_exists(*key) else None
    return endpoint if endpoint is not None and endpoint.endpoint_config_name == config else None


def _settle(key: tuple[str, str], config: str, failure: str | None) -> Callable[[], None]:
    """Host mode: the hoster's outcome for the endpoint on ``config``: ``InService`` with each variant's
    ``CurrentInstanceCount`` its routed instances, or ``Failed`` with the reason (an update's failure puts the
    previous state back, ``InService`` with the reason, as SageMaker rolls back). Called under ``_lock``; what it
    returns reports a count change's outcome, to be called after."""
    endpoint = _current(key, config)
    if hosting() != "host" or endpoint is None or endpoint.endpoint_status not in ("Creating", "Updating"):
        return lambda: None
    route = _routes.get(key)
    instances = (route or {}).get("instances") or {}
    counted = {v["VariantName"]: len(instances.get(v["VariantName"]) or [route]) if route else 0
               for v in endpoint.production_variants}  # a route without instances: one server for every variant
    if failure is None:
        for variant in endpoint.production_variants:
            variant["CurrentInstanceCount"] = counted[variant["VariantName"]]
    scaling = _scaling.pop(key, None)
    old = _previous.pop(key, None)
    if failure is not None and endpoint.endpoint_status == "Updating" and old is not None and key in _routes:
        _backend(key[0]).endpoints[key[1]] = endpoint = old
        endpoint.endpoint_status = "InService"
    else:
        endpoint.endpoint_status = "Failed" if failure is not None else "InService"
    endpoint.failure_reason = failure[:1024] if failure is not None else None
    endpoint.last_modified_time = utcnow()
    if scaling is None:
        return lambda: None
    variant, done = scaling
    serving = 0 if failure is not None else counted.get(variant, 0)
    return lambda: done(serving)


def handle(request: Request) -> Response:
    """Answer one request under ``PREFIX``."""
    parts = [p for p in request.path[len(PREFIX):].split("/") if p]
    if not parts and request.method == "GET":
        with _lock:
            routes = [{"region": r, "endpoint": e, **entry} for (r, e), entry in sorted(_routes.items())]
        return _json(200, {"routes": routes})
    if len(parts) == 3 and parts[2] in ("claim", "failure") and request.method == "POST":
        return _outcome(request, (parts[0], parts[1]), parts[2])
    if len(parts) != 2:
        return _json(404, {"error": "not found"})
    key = (parts[0], parts[1])
    if request.method == "PUT":
        try:
            sent = json.loads(request.get_data())
            entry = {"url": str(sent["url"]).rstrip("/"), "container": str(sent.get("container", "")),
                     "variants": {str(k): str(v).rstrip("/") for k, v in (sent.get("variants") or {}).items()}}
            if sent.get("instances"):
                entry["instances"] = {str(k): [str(u).rstrip("/") for u in v] for k, v in sent["instances"].items()}
            config = str(sent.get("config") or "")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _json(400, {"error": f"bad request: {exc!r}"})
        if not _endpoint_exists(*key):
            return _json(404, {"error": f"no endpoint {key[1]} in {key[0]}"})
        with _lock:
            _routes[key] = entry
            report = _settle(key, config, None) if config else (lambda: None)
        report()
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


def _outcome(request: Request, key: tuple[str, str], what: str) -> Response:
    """``claim``: the first hoster to ask for the endpoint's current config gets it; ``failure``: it could not
    be hosted (host mode: the endpoint fails, or an update rolls back)."""
    try:
        sent = json.loads(request.get_data())
        config, reason = str(sent["config"]), str(sent.get("reason") or "")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _json(400, {"error": f"bad request: {exc!r}"})
    with _lock:
        if _current(key, config) is None:
            return _json(404, {"error": f"no endpoint {key[1]} on config {config} in {key[0]}"})
        if what == "failure":
            report = _settle(key, config, reason or "The endpoint could not be hosted.")
        else:
            claimed = (*key, config) not in _claims
            _claims.add((*key, config))
    if what == "failure":
        report()
        return _json(200, {"reported": True})
    return _json(200, {"claimed": claimed})
