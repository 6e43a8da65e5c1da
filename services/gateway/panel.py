"""The demo page's live panel: the stack's endpoint and function over the last 15 minutes, per minute, from the
emulator's CloudWatch (``GetMetricData``), fetched here with the gateway's own credentials so the browser holds none.

    GET /page/metrics      {"minutes": [15 ISO times], "endpoint": {...}, "function": {...}}

Each series has one value per minute, ``null`` where CloudWatch has no datapoint: the endpoint
(``settings.ENDPOINT_NAME``), per variant: ``invocations``, ``p50_ms``/``p99_ms`` (``ModelLatency``), ``errors``
(4XX + 5XX) and ``instances`` (``Invocations`` over ``InvocationsPerInstance``: the instance count while it served),
with ``DescribeEndpoint``'s ``CurrentInstanceCount``; the function (``settings.FUNCTION_NAME``): ``invocations``,
``p50_ms``/``p99_ms`` (``Duration``), ``errors`` and ``throttles``. What cannot be read (no such endpoint, the emulator
away) comes with a ``reason`` instead, never as an error: the page shows it as empty. Same origin only (the guard), and
``x-api-key`` when ``DOGOPS_API_KEY`` is set, as ``POST /predict``.
"""

import json
import logging
from datetime import datetime, timedelta, timezone

from botocore.exceptions import BotoCoreError, ClientError
from flask import Blueprint, Response

from ..observability.clients import root_client
from ..stack import settings
from .apigw import api_key_refusal

log = logging.getLogger(__name__)
blueprint = Blueprint("panel", __name__)

MINUTES = 15
ENDPOINT_QUERIES = {  # series: (metric, statistic, scale to the page's unit)
    "invocations": ("Invocations", "Sum", 1), "per_instance": ("InvocationsPerInstance", "Sum", 1),
    "p50_ms": ("ModelLatency", "p50", 1e-3), "p99_ms": ("ModelLatency", "p99", 1e-3),
    "errors_4xx": ("Invocation4XXErrors", "Sum", 1), "errors_5xx": ("Invocation5XXErrors", "Sum", 1)}
FUNCTION_QUERIES = {
    "invocations": ("Invocations", "Sum", 1), "p50_ms": ("Duration", "p50", 1), "p99_ms": ("Duration", "p99", 1),
    "errors": ("Errors", "Sum", 1), "throttles": ("Throttles", "Sum", 1)}


def window(now: datetime) -> list[datetime]:
    """The starts of the last ``MINUTES`` minutes, the current one last."""
    last = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    return [last - timedelta(minutes=MINUTES - 1 - i) for i in range(MINUTES)]


def series(namespace: str, dimensions: list[dict], queries: dict, minutes: list[datetime]) -> dict[str, list]:
    """One ``GetMetricData`` call: each query's values per minute of ``minutes`` (None without a datapoint)."""
    answer = root_client("cloudwatch").get_metric_data(
        StartTime=minutes[0], EndTime=minutes[-1] + timedelta(minutes=1), ScanBy="TimestampAscending",
        MetricDataQueries=[{"Id": key, "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": metric,
                                                                 "Dimensions": dimensions}, "Period": 60, "Stat": stat}}
                           for key, (metric, stat, _) in queries.items()])
    found = {key: [None] * len(minutes) for key in queries}
    index = {minute: i for i, minute in enumerate(minutes)}
    for result in answer["MetricDataResults"]:
        scale = queries[result["Id"]][2]
        for moment, value in zip(result["Timestamps"], result["Values"]):
            if moment in index:
                found[result["Id"]][index[moment]] = round(value * scale, 3)
    return found


def _variant(endpoint: str, variant: dict, minutes: list[datetime]) -> dict:
    raw = series("AWS/SageMaker", [{"Name": "EndpointName", "Value": endpoint},
                                   {"Name": "VariantName", "Value": variant["VariantName"]}], ENDPOINT_QUERIES, minutes)
    errors = [None if a is None and b is None else (a or 0) + (b or 0)
              for a, b in zip(raw.pop("errors_4xx"), raw.pop("errors_5xx"))]
    per_instance = raw.pop("per_instance")
    instances = [round(n / p) if n and p else None for n, p in zip(raw["invocations"], per_instance)]
    return {"name": variant["VariantName"], "current_instances": variant.get("CurrentInstanceCount"),
            "series": {**raw, "errors": errors, "instances": instances}}


def endpoint_panel(minutes: list[datetime]) -> dict:
    name = settings.ENDPOINT_NAME
    try:
        described = root_client("sagemaker").describe_endpoint(EndpointName=name)
    except ClientError as error:
        return {"name": name, "variants": [], "reason": error.response["Error"].get("Message", "not found")}
    variants = described.get("ProductionVariants") or []
    return {"name": name, "status": described["EndpointStatus"],
            "variants": [_variant(name, variant, minutes) for variant in variants]}


def function_panel(minutes: list[datetime]) -> dict:
    name = settings.FUNCTION_NAME
    return {"name": name, "series": series("AWS/Lambda", [{"Name": "FunctionName", "Value": name}],
                                           FUNCTION_QUERIES, minutes)}


def _read(part, minutes: list[datetime]) -> dict:
    try:
        return part(minutes)
    except (BotoCoreError, ClientError, KeyError, TypeError, ValueError) as error:  # the emulator away, an odd answer
        log.info("panel: %s not read: %s", part.__name__, error)  # every refresh of every open page: not a warning
        return {"reason": f"metrics not available: {error}"}


@blueprint.get("/page/metrics")
def metrics() -> Response:
    refusal = api_key_refusal()
    if refusal is not None:
        return refusal
    minutes = window(datetime.now(timezone.utc))
    body = {"minutes": [m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in minutes],
            "endpoint": _read(endpoint_panel, minutes), "function": _read(function_panel, minutes)}
    return Response(json.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})
