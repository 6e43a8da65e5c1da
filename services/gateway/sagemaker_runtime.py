"""SageMaker Runtime ``InvokeEndpoint``: the endpoint is looked up on the emulator, a production variant chosen
(``TargetVariant``, else by weight), the request goes to that variant's model server's ``/invocations`` (where the
emulator's route table says: a ``serve`` of ``services.hosting.reconciler`` or a container of
``services.hosting.endpoints``; an endpoint with none is not in service; a variant with several instances gets its
requests spread over them in turn), and the answer comes back as AWS gives it
(contracts §A.9.6). The caller must be allowed ``sagemaker:InvokeEndpoint`` on the endpoint's ARN (``iam``) before
anything else happens. Each request that reaches a variant is counted and timed in CloudWatch as SageMaker does
(``services.observability.sagemaker_metrics``: Invocations, errors, ModelLatency, OverheadLatency), off the
request's path.

    POST /endpoints/<name>/invocations

Settings: ``DOGOPS_ENDPOINT_TIMEOUT`` (seconds the container may take, default 60) and
``DOGOPS_OVERSIZE`` (``413``, the default, or ``validation``: how a body over 6 MiB is refused).
"""

import itertools
import os
import random
import time

import requests
import urllib3
from botocore.exceptions import ClientError
from flask import Blueprint, Response, request

from ..observability import sagemaker_metrics
from ..security.guard import RECEIVED
from ..security.sigv4 import RootAuth
from ..stack import settings
from . import iam
from .aws_errors import aws_error, request_id
from .emulator import Recent, client, signed_region

blueprint = Blueprint("sagemaker_runtime", __name__)

MAX_BODY = 6291456  # botocore's BodyBlob max, for the request and for the container's answer
MAX_MESSAGE = 2048  # botocore's cap on Message and OriginalMessage
CONNECT_TIMEOUT = 2.0  # AWS asks containers to accept within 250 ms; loopback on a loaded machine gets more
CACHE_SECONDS = 2.0  # how long a DescribeEndpoint answer is reused
SERVING_STATES = ("InService", "Updating")  # an endpoint being updated still serves
FORWARDED = ("Content-Type", "Accept", *(f"X-Amzn-SageMaker-{name}" for name in (
    "Custom-Attributes", "Target-Model", "Target-Variant", "Target-Container-Hostname", "Inference-Id",
    "Enable-Explanations", "Inference-Component", "Session-Id")))
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
TIMEOUT_MESSAGE = ("Your invocation timed out while waiting for a response from container primary. Review the latency "
                   "metrics for each container in Amazon CloudWatch, resolve the issue, and try again.")

_descriptions = Recent(CACHE_SECONDS)
_routes = Recent(settings.HOSTING_CACHE_SECONDS)
_turns: dict[tuple[str, str, str], itertools.count] = {}
_session = requests.Session()


class EndpointUnavailable(Exception):
    """The endpoint cannot take requests: unknown, or not in service."""


def _describe(region: str, name: str) -> dict:
    """``DescribeEndpoint`` on the emulator, reused for ``CACHE_SECONDS``."""
    return _descriptions.get((region, name), lambda: _lookup(region, name))


def _lookup(region: str, name: str) -> dict:
    try:
        return client("sagemaker", region).describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ValidationException", "ValidationError"):
            raise
        raise EndpointUnavailable(f"Endpoint {name} of account {settings.ACCOUNT} not found.") from None


def serving_url(region: str, name: str, variant: str) -> str:
    """Where the variant's model server answers (the emulator's route table, reused a moment); an endpoint that no
    server hosts is not in service: no other model ever answers for it."""
    entry = _routes.get((region, name), lambda: _hosted_route(region, name))
    if not entry:
        raise EndpointUnavailable(f"Endpoint {name} of account {settings.ACCOUNT} is not in service: no model "
                                  f"server hosts it on this stack.")
    instances = (entry.get("instances") or {}).get(variant)
    if instances:  # round robin over the variant's instances (next() on a count is atomic under the GIL)
        turn = _turns.setdefault((region, name, variant), itertools.count())
        return instances[next(turn) % len(instances)]
    return entry.get("variants", {}).get(variant) or entry["url"]


def _hosted_route(region: str, name: str) -> dict | None:
    answer = _session.get(f"{settings.emulator_url()}{settings.HOSTING_ROUTES}/{region}/{name}", timeout=10,
                          auth=RootAuth())
    return answer.json() if answer.status_code == 200 else None


def endpoint_arn(region: str, name: str) -> str:
    """The endpoint's ARN, as the emulator names it (``EndpointArn`` of ``DescribeEndpoint``)."""
    return f"arn:aws:sagemaker:{region}:{settings.ACCOUNT}:endpoint/{name}"


def invoked_variant(description: dict, target: str | None) -> str:
    """The production variant that serves the request: ``target`` (``TargetVariant``), else one drawn by the
    variants' current weights, as SageMaker splits traffic; raise ``EndpointUnavailable`` when none can."""
    name, status = description["EndpointName"], description.get("EndpointStatus")
    if status not in SERVING_STATES:
        raise EndpointUnavailable(f"Endpoint {name} of account {settings.ACCOUNT} is not in service (status {status}).")
    variants = description.get("ProductionVariants") or [{"VariantName": "AllTraffic"}]
    names = [v["VariantName"] for v in variants]
    if target:
        if target not in names:
            raise EndpointUnavailable(f"Target variant {target} not found for endpoint {name}.")
        return target
    weights = [max(float(v.get("CurrentWeight", 1.0)), 0.0) for v in variants]
    return random.choices(names, weights)[0] if sum(weights) > 0 else names[0]


def _read_body() -> bytes | None:
    """The request body (read and hashed by the signature check), or None when it is over ``MAX_BODY``."""
    body = request.get_data()
    return body if len(body) <= MAX_BODY else None


def _oversize() -> Response:
    if os.environ.get("DOGOPS_OVERSIZE", "413") == "validation":
        return aws_error(400, "ValidationError", f"Request {request_id()} has oversize body.")
    return Response(f"HTTP content length exceeded {MAX_BODY} bytes.", 413, content_type="text/plain")


def model_error(endpoint: str, region: str, status: int, original: str) -> Response:
    """424 ``ModelError``, as SageMaker reports a container's failure (status 0: no answer)."""
    original = original[:MAX_MESSAGE]
    kind = "client" if 400 <= status < 500 else "server"
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    message = (f'Received {kind} error ({status}) from primary with message "{original}". See '
               f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group={group}"
               f" in account {settings.ACCOUNT} for more information.")
    fields = {"ErrorCode": "CLIENT_ERROR_FROM_MODEL"} if kind == "client" else {}
    return aws_error(424, "ModelError", message[:MAX_MESSAGE], OriginalStatusCode=status, OriginalMessage=original,
                     LogStreamArn=f"arn:aws:logs:{region}:{settings.ACCOUNT}:log-group:{group}", **fields)


@blueprint.post("/endpoints/<name>/invocations")
def invoke_endpoint(name: str) -> Response:
    region = signed_region()
    denied = iam.refusal("sagemaker:InvokeEndpoint", endpoint_arn(region, name), region)
    if denied is not None:
        return denied
    try:
        description = _describe(region, name)
        variant = invoked_variant(description, request.headers.get("X-Amzn-SageMaker-Target-Variant"))
        url = serving_url(region, name, variant)
    except EndpointUnavailable as exc:
        return aws_error(400, "ValidationError", str(exc))
    body = _read_body()
    if body is None:
        return _oversize()
    status, model_s, response = _forward(name, region, variant, url, body)
    received = request.environ.get(RECEIVED)
    overhead_s = time.perf_counter() - received - model_s if received is not None and model_s is not None else None
    sagemaker_metrics.invocation(region, name, variant, _instances(description, variant), status,
                                 None if model_s is None else model_s * 1e6,
                                 None if overhead_s is None else max(0.0, overhead_s) * 1e6)
    return response


def _instances(description: dict, variant: str) -> int:
    """The variant's current instance count (for ``InvocationsPerInstance``)."""
    for entry in description.get("ProductionVariants") or []:
        if entry.get("VariantName") == variant:
            return int(entry.get("CurrentInstanceCount") or entry.get("DesiredInstanceCount") or 1)
    return 1


def _forward(name: str, region: str, variant: str, url: str, body: bytes) -> tuple[int, float | None, Response]:
    """The request to the variant's model server: its HTTP status (0: no answer), the seconds it took when it
    answered (SageMaker's ModelLatency), and the answer to the caller."""
    headers = {key: request.headers[key] for key in FORWARDED if key in request.headers}
    timeout = float(os.environ.get("DOGOPS_ENDPOINT_TIMEOUT", "60"))
    started = time.perf_counter()
    try:
        with _session.post(url + "/invocations", data=body, headers=headers,
                           stream=True, timeout=(CONNECT_TIMEOUT, timeout)) as upstream:
            answer = upstream.raw.read(MAX_BODY + 1, decode_content=True)
    except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
        return 0, None, model_error(name, region, 0, TIMEOUT_MESSAGE)
    except requests.ConnectionError as exc:
        return 0, None, model_error(name, region, 0, f"Could not connect to container primary: {exc}")
    except urllib3.exceptions.HTTPError:  # the answer broke off
        return upstream.status_code, None, model_error(name, region, upstream.status_code,
                                                       "Could not load the entire response body.")
    model_s = time.perf_counter() - started
    if len(answer) > MAX_BODY:
        return upstream.status_code, model_s, model_error(
            name, region, upstream.status_code, f"The response from container primary is over the limit of {MAX_BODY} "
            "bytes.")
    if not 200 <= upstream.status_code < 300:
        return upstream.status_code, model_s, model_error(name, region, upstream.status_code,
                                                          answer.decode("utf-8", "replace"))
    response = Response(answer, 200, content_type=upstream.headers.get("Content-Type", "application/octet-stream"))
    response.headers["x-Amzn-Invoked-Production-Variant"] = variant
    response.headers["x-amzn-RequestId"] = request_id()
    if CUSTOM_ATTRIBUTES in upstream.headers:
        response.headers[CUSTOM_ATTRIBUTES] = upstream.headers[CUSTOM_ATTRIBUTES]
    return upstream.status_code, model_s, response
