"""Application Auto Scaling that acts: target tracking on SageMaker endpoint variants, evaluated as AWS does.

moto keeps the scalable targets and policies (boto3's ``application-autoscaling``, a CloudFormation stack's
``AWS::ApplicationAutoScaling::*``) but nothing evaluates them. Here a thread (started by the first scaling policy)
takes, every ``DOGOPS_AUTOSCALING_PERIOD_S`` seconds (default 60, CloudWatch's period for these alarms), one
datapoint per target-tracking policy on a variant's ``sagemaker:variant:DesiredInstanceCount``
(``resource endpoint/<name>/variant/<variant>``) with the predefined ``SageMakerVariantInvocationsPerInstance``:
the Sum of the variant's ``InvocationsPerInstance`` in the emulator's CloudWatch over the last period, as a rate per
minute (the target's unit, so a short period keeps the target's meaning). Then, as the two alarms AWS creates for
the policy:

- scale out when the last 3 datapoints are all above ``TargetValue``, to ``ceil(current * metric / target)``, not
  within ``ScaleOutCooldown`` of the last scale-out;
- scale in when the last 15 datapoints are all below 90 % of it (and ``DisableScaleIn`` is not set), to the same
  formula, not within ``ScaleInCooldown`` of the last scale-in;
- a period without data is missing, as in CloudWatch (no invocations publish no ``InvocationsPerInstance``): no
  alarm fires on it, so an idle endpoint keeps its instances, as on AWS;
- the result is held within the target's ``MinCapacity``/``MaxCapacity``; with several policies the largest
  scale-out wins and a scale-in needs every policy; ``SuspendedState`` (dynamic scaling in/out) is honoured; an
  endpoint that is not ``InService`` (creating, updating, scaling) is left alone.

The two alarms are real too: ``PutScalingPolicy`` creates them in the emulator's CloudWatch as AWS names and shapes
them (``TargetTracking-endpoint/<name>/variant/<variant>-AlarmHigh-<uuid>``: ``InvocationsPerInstance`` Sum over
60 s, 3 periods above ``TargetValue``; ``...-AlarmLow-<uuid>``: 15 periods under 90 % of it, none with
``DisableScaleIn``), answered in the policy's ``Alarms`` and by ``DescribeAlarms``, evaluated by the emulator's
CloudWatch (their actions are this thread's decisions, which name them in the activity's cause); a changed policy
gets new ones, and a deleted policy or deregistered target (which deletes its policies, as on AWS) takes them along.

A change goes through ``sagemaker_endpoints.set_instance_count`` (servers started or stopped natively;
``DescribeEndpoint``'s counts follow). Each is a scaling activity, logged and answered by
``DescribeScalingActivities`` (moto lacks it) as AWS shapes it: newest first, ``InProgress`` until the instances
serve, then ``Successful`` (``Failed`` when fewer came up); the last 100 per account and region are kept.
"""

import json
import logging
import math
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from moto.applicationautoscaling.models import (
    ApplicationAutoscalingBackend,
    FakeApplicationAutoscalingPolicy,
    applicationautoscaling_backends,
)
from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.cloudwatch.models import MetricAggregatedDatum, cloudwatch_backends
from moto.sagemaker.models import sagemaker_backends

from . import cloudwatch, sagemaker_endpoints
from .periodic import Periodic

log = logging.getLogger(__name__)

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
OUT_DATAPOINTS = 3  # the AlarmHigh AWS creates: 3 of 3 one-minute datapoints above the target
IN_DATAPOINTS = 15  # the AlarmLow: 15 of 15 below 90 % of it
IN_FRACTION = 0.9
PUBLISH_LAG_S = 2.0  # the gateway's publisher sends each second: a period is read once its data is in
DEFAULT_COOLDOWN_S = 300  # SageMaker variants' default ScaleIn/ScaleOutCooldown


def period_s() -> float:
    """``DOGOPS_AUTOSCALING_PERIOD_S``: seconds per datapoint and between evaluations (default 60)."""
    return float(os.environ.get("DOGOPS_AUTOSCALING_PERIOD_S") or 60)


@dataclass
class _Tracking:
    """One policy's datapoints (newest last; None: missing) and when it last scaled (monotonic seconds)."""

    points: deque = field(default_factory=lambda: deque(maxlen=IN_DATAPOINTS))
    last_out: float = -math.inf
    last_in: float = -math.inf


_tracking: dict[tuple, _Tracking] = {}
_activities: dict[tuple[str, str], list[dict]] = {}  # (account, region): DescribeScalingActivities' entries
KEPT_ACTIVITIES = 100


def desired(current: int, metric: float, target: float) -> int:
    """Target tracking's capacity for ``metric`` at ``current`` instances."""
    return max(1, math.ceil(current * metric / target))


def proposal(tracking: _Tracking, config: dict, current: int, now: float) -> int | None:
    """The capacity this policy asks for now (None: no change), before min/max."""
    target = float(config["TargetValue"])
    points = list(tracking.points)
    latest = points[-1] if points else None
    recent = points[-OUT_DATAPOINTS:]
    if len(recent) == OUT_DATAPOINTS and all(p is not None and p > target for p in recent):
        if now - tracking.last_out >= float(config.get("ScaleOutCooldown", DEFAULT_COOLDOWN_S)):
            return max(current, desired(current, latest, target))
        return None
    if config.get("DisableScaleIn") or len(points) < IN_DATAPOINTS:
        return None
    if all(p is not None and p < IN_FRACTION * target for p in points):
        if now - tracking.last_in >= float(config.get("ScaleInCooldown", DEFAULT_COOLDOWN_S)):
            return min(current, desired(current, latest, target))
    return None


def _datapoint(account: str, region: str, endpoint: str, variant: str, end: datetime, period: float) -> float | None:
    """The variant's InvocationsPerInstance Sum over the period ending at ``end``, per minute; None without data."""
    backend = cloudwatch_backends[account][region]
    data = cloudwatch.matching(backend, "AWS/SageMaker", "InvocationsPerInstance",
                               [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
                               None, end - timedelta(seconds=period), end)
    if not data:
        return None
    total = sum(md.sum if isinstance(md, MetricAggregatedDatum) else md.value for md in data)
    return total * 60.0 / period


def _suspended(target, key: str) -> bool:
    return bool((target.suspended_state or {}).get(key))


def evaluate(account: str, region: str, backend: ApplicationAutoscalingBackend, now: float, end: datetime,
             period: float) -> None:
    """One round for every SageMaker variant target of one account and region."""
    for target in backend.describe_scalable_targets("sagemaker", None, DIMENSION):
        parts = target.resource_id.split("/")
        if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
            continue
        name, variant = parts[1], parts[3]
        sagemaker = sagemaker_backends[account][region]
        endpoint = sagemaker.endpoints.get(name)
        entry = next((v for v in endpoint.production_variants if v["VariantName"] == variant), None) if endpoint \
            else None
        policies = [p for p in backend.policies.values()
                    if p.resource_id == target.resource_id and p.scalable_dimension == DIMENSION
                    and p.policy_type == "TargetTrackingScaling"
                    and (p.target_tracking_scaling_policy_configuration or {}).get(
                        "PredefinedMetricSpecification", {}).get("PredefinedMetricType") == METRIC]
        if entry is None or not policies:
            continue
        point = _datapoint(account, region, name, variant, end, period)
        current = int(entry.get("DesiredInstanceCount") or 1)
        asks = []
        for policy in policies:
            tracking = _tracking.setdefault((account, region, policy.policy_arn), _Tracking())
            tracking.points.append(point)
            asks.append((tracking, proposal(tracking, policy.target_tracking_scaling_policy_configuration, current,
                                            now)))
        outs = [n for _, n in asks if n is not None and n > current]
        ins = [n for _, n in asks if n is not None and n < current]
        low, high = int(target.min_capacity or 1), int(target.max_capacity or current)
        if outs and not _suspended(target, "DynamicScalingOutSuspended"):
            wanted, cause = min(max(outs), high), "out"
        elif ins and len(ins) == len(asks) and not _suspended(target, "DynamicScalingInSuspended"):
            wanted, cause = max(max(ins), low), "in"
        else:
            continue
        if wanted == current or endpoint.endpoint_status != "InService":
            continue
        names = []
        for (tracking, n), policy in zip(asks, policies):
            if n is not None and (n > current) == (cause == "out"):
                names.append(policy.policy_name)
            if cause == "out":
                tracking.last_out = now
            else:
                tracking.last_in = now
        side = f"{target.resource_id}-Alarm{'High' if cause == 'out' else 'Low'}-"
        alarm = ", ".join(a.name for p in policies for a in p.alarms if p.policy_name in names and side in a.name)
        _act(account, region, sagemaker, endpoint, target.resource_id, variant, wanted,
             f"monitor alarm {alarm} in state ALARM triggered policy {', '.join(names)} "
             f"(InvocationsPerInstance {point:.1f} per minute, {current} instances)")


def _act(account: str, region: str, sagemaker, endpoint, resource: str, variant: str, wanted: int,
         cause: str) -> None:
    """Set the variant's count as a scaling activity, recorded as AWS describes one."""
    activity = {"ActivityId": str(uuid.uuid4()), "ServiceNamespace": "sagemaker", "ResourceId": resource,
                "ScalableDimension": DIMENSION, "Description": f"Setting desired instance count to {wanted}.",
                "Cause": cause, "StartTime": time.time(), "StatusCode": "InProgress"}
    kept = _activities.setdefault((account, region), [])
    kept.append(activity)
    del kept[:-KEPT_ACTIVITIES]
    log.info("auto scaling %s: %s (%s)", resource, activity["Description"], cause)

    def done(serving: int) -> None:
        activity.update(EndTime=time.time(), StatusCode="Successful" if serving == wanted else "Failed")
        if serving != wanted:
            activity["StatusMessage"] = f"{serving} of {wanted} instances serve: a new instance did not start."

    sagemaker_endpoints.set_instance_count(sagemaker, endpoint, variant, wanted, done)


def _describe_scaling_activities(self) -> str:
    """``DescribeScalingActivities``: this account and region's activities, newest first, filtered as asked."""
    namespace, resource = self._get_param("ServiceNamespace"), self._get_param("ResourceId")
    dimension, limit = self._get_param("ScalableDimension"), int(self._get_param("MaxResults") or 50)
    start = int(self._get_param("NextToken") or 0)
    found = [dict(a) for a in reversed(_activities.get((self.current_account, self.region), []))
             if a["ServiceNamespace"] == namespace and resource in (None, a["ResourceId"])
             and dimension in (None, a["ScalableDimension"])]
    answer: dict = {"ScalingActivities": found[start:start + limit]}
    if start + limit < len(found):
        answer["NextToken"] = str(start + limit)
    return json.dumps(answer)


ApplicationAutoScalingResponse.describe_scaling_activities = _describe_scaling_activities


def _evaluate_all() -> None:
    """Every policy of every account and region, on the period just ended."""
    end = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=PUBLISH_LAG_S)
    now = time.monotonic()
    for account in list(applicationautoscaling_backends):
        for region, backend in list(applicationautoscaling_backends[account].items()):
            try:
                evaluate(account, region, backend, now, end, period_s())
            except Exception:  # noqa: BLE001 - one region's trouble stops no other
                log.exception("auto scaling not evaluated in %s %s", account, region)


_evaluator = Periodic("autoscaling", _evaluate_all, period_s)  # started by the first scaling policy
_moto_put_scaling_policy = ApplicationAutoscalingBackend.put_scaling_policy


def _put_scaling_policy(self, *args, **kwargs):
    before = dict(self.policies)
    policy = _moto_put_scaling_policy(self, *args, **kwargs)
    for key, old in before.items():
        if self.policies.get(key) is policy:  # a changed policy: its old alarms go (moto left them)
            old.delete_alarms(self.account_id, self.region_name)
    _evaluator.start()
    return policy


def _deregister_scalable_target(self, namespace: str, r_id: str, dimension: str) -> None:
    """moto's, and the target's scaling policies (with their alarms) deleted, as AWS does."""
    _moto_deregister_scalable_target(self, namespace, r_id, dimension)
    for key, policy in list(self.policies.items()):
        if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == (namespace, r_id, dimension):
            policy.delete_alarms(self.account_id, self.region_name)
            del self.policies[key]


def _create_alarms(self: FakeApplicationAutoscalingPolicy) -> None:
    """moto's (DynamoDB, ECS), and for target tracking on a SageMaker variant's invocations per instance the two
    alarms AWS creates."""
    _moto_create_alarms(self)
    config = self.target_tracking_scaling_policy_configuration or {}
    parts = self.resource_id.split("/")
    if (self.service_namespace != "sagemaker" or self.scalable_dimension != DIMENSION or len(parts) != 4
            or config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType") != METRIC):
        return
    target = float(config["TargetValue"])
    action = f"{self.policy_arn}:createdBy/{uuid.uuid4()}"
    backend = cloudwatch_backends[self.account_id][self.region_name]
    sides = [("High", "GreaterThanThreshold", OUT_DATAPOINTS, target)]
    if not config.get("DisableScaleIn"):
        sides.append(("Low", "LessThanThreshold", IN_DATAPOINTS, IN_FRACTION * target))
    for side, comparison, periods, threshold in sides:
        self.alarms.append(backend.put_metric_alarm(
            name=f"TargetTracking-{self.resource_id}-Alarm{side}-{uuid.uuid4()}", namespace="AWS/SageMaker",
            metric_name="InvocationsPerInstance", comparison_operator=comparison, evaluation_periods=periods,
            period=60, threshold=threshold, statistic="Sum",
            description=f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {action}.",
            dimensions=[{"Name": "EndpointName", "Value": parts[1]}, {"Name": "VariantName", "Value": parts[3]}],
            alarm_actions=[action]))


ApplicationAutoscalingBackend.put_scaling_policy = _put_scaling_policy
_moto_deregister_scalable_target = ApplicationAutoscalingBackend.deregister_scalable_target
ApplicationAutoscalingBackend.deregister_scalable_target = _deregister_scalable_target
_moto_create_alarms = FakeApplicationAutoscalingPolicy.create_alarms
FakeApplicationAutoscalingPolicy.create_alarms = _create_alarms
