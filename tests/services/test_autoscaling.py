"""Auto-scaling that acts on a natively hosted endpoint (``services.emulator.autoscaling``), with real boto3 on a real
emulator and gateway: ``UpdateEndpointWeightsAndCapacities`` changes how many ``serve`` processes answer (both
get requests, round robin) with ``DescribeEndpoint``'s counts following; a target-tracking policy registered with
``application-autoscaling`` scales out under load above its target and back in after low load, within min/max.
The model answers with its worker's pid, so which instance served a request is seen, not assumed. The target
tracking rules themselves (3 datapoints out, 15 in, cooldowns, missing data) are checked on ``proposal``."""

import json
import threading
import time
from collections import deque

import pytest
from botocore.exceptions import ClientError

from services.emulator.autoscaling import _Tracking, proposal

from .processes import client, emulator, gateway, tar_gz

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
PERIOD_S = 1
FAST_WAIT = {"Delay": 1, "MaxAttempts": 240}
PID_MODEL = b"""import json
import os


def model_fn(model_dir):
    return "pid"  # any model but None: the server is ready once it has one


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return os.getpid()


def output_fn(prediction, accept):
    return json.dumps({"pid": prediction})
"""
POLICY = {"TargetValue": 120.0, "ScaleOutCooldown": 5, "ScaleInCooldown": 5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An emulator hosting natively with a 1 s auto-scaling period, a gateway and the pid model."""
    logs = tmp_path_factory.mktemp("autoscaling")
    server = emulator(logs, DOGOPS_HOSTING="native", DOGOPS_HOSTING_DIR=logs / "hosting", DOGOPS_HOSTING_TIMEOUT=120,
                      DOGOPS_AUTOSCALING_PERIOD_S=PERIOD_S)
    gw = gateway(logs, server.url)
    client("s3", server.url).create_bucket(Bucket="models")
    client("s3", server.url).put_object(Bucket="models", Key="pid/model.tar.gz",
                                        Body=tar_gz({"code/inference.py": PID_MODEL}))
    client("sagemaker", server.url).create_model(ModelName="pid", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": "s3://models/pid/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
    client("sagemaker", server.url).create_endpoint_config(EndpointConfigName="pid", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "pid", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    yield server, gw
    gw.stop()
    server.stop()


@pytest.fixture(scope="module")
def endpoint(stack):
    """One endpoint on the pid model for the slow tests (one server start fewer): each leaves it on 1 instance."""
    sagemaker = client("sagemaker", stack[0].url)
    sagemaker.create_endpoint(EndpointName="pid", EndpointConfigName="pid")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="pid", WaiterConfig=FAST_WAIT)
    yield "pid"
    sagemaker.delete_endpoint(EndpointName="pid")


def _pid(runtime, endpoint: str) -> int:
    answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", ContentType="application/json",
                                     Accept="application/json")
    return json.loads(answer["Body"].read())["pid"]


def _counts(sagemaker, endpoint: str) -> tuple[str, int, int]:
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    variant = described["ProductionVariants"][0]
    return described["EndpointStatus"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]


def _until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.mark.slow
def test_update_endpoint_weights_and_capacities_changes_the_instances_that_serve(stack, endpoint):
    sagemaker = client("sagemaker", stack[0].url)
    runtime = client("sagemaker-runtime", stack[1].url)
    assert _counts(sagemaker, endpoint) == ("InService", 1, 1)
    assert len({_pid(runtime, endpoint) for _ in range(6)}) == 1

    sagemaker.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    assert _counts(sagemaker, endpoint) == ("Updating", 1, 2)  # until the second server answers /ping
    with pytest.raises(ClientError) as busy:
        sagemaker.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 3}])
    assert "in-progress" in busy.value.response["Error"]["Message"]
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    assert _counts(sagemaker, endpoint) == ("InService", 2, 2)
    time.sleep(2.5)  # the gateway's route cache
    served = [_pid(runtime, endpoint) for _ in range(8)]
    assert len(set(served)) == 2 and served.count(served[0]) == 4  # round robin: each instance every other time
    described = sagemaker.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    assert described["CurrentWeight"] == 1.0  # a change of count alone leaves the weight

    with pytest.raises(ClientError) as unknown:
        sagemaker.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
            {"VariantName": "Nope", "DesiredInstanceCount": 1}])
    assert unknown.value.response["Error"]["Code"] == "ValidationException"

    sagemaker.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    assert _counts(sagemaker, endpoint) == ("InService", 1, 1)
    time.sleep(2.5)
    assert len({_pid(runtime, endpoint) for _ in range(6)}) == 1


@pytest.mark.slow
def test_target_tracking_scales_out_under_load_and_back_in_when_it_drops(stack, endpoint):
    """The rehearsal: load well above 120 invocations per instance per minute on 1 instance -> 2 (the max); then a
    trickle under 90 % of the target -> back to 1 (the min) after 15 low datapoints; its timeline is printed. The
    trickle never leaves a period empty: a period without requests has no datapoint, and no scale-in follows."""
    sagemaker = client("sagemaker", stack[0].url)
    scaling = client("application-autoscaling", stack[0].url)
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource, MinCapacity=1, MaxCapacity=2,
                                     ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    scaling.put_scaling_policy(
        PolicyName="per-instance", ServiceNamespace="sagemaker", ResourceId=resource, PolicyType="TargetTrackingScaling",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", TargetTrackingScalingPolicyConfiguration={
            **POLICY, "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    runtime = client("sagemaker-runtime", stack[1].url)
    trickle = threading.Event()  # set: two requests a second from the first sender, none from the other
    served: deque = deque(maxlen=200)
    stop = threading.Event()

    def send(first: bool) -> None:
        while not stop.is_set():
            if trickle.is_set() and not first:
                stop.wait(0.5)
                continue
            served.append((time.monotonic(), _pid(runtime, endpoint)))
            if trickle.is_set():
                stop.wait(0.5)

    senders = [threading.Thread(target=send, args=(n == 0,), daemon=True) for n in range(2)]
    started = time.monotonic()
    timeline = []

    def watch(want: tuple[str, int, int]) -> bool:
        now = _counts(sagemaker, endpoint)
        assert now[1] <= 2 and now[2] <= 2  # never past MaxCapacity
        if not timeline or timeline[-1][1:] != now:
            timeline.append((round(time.monotonic() - started, 1), *now))
        return now == want

    try:
        for sender in senders:
            sender.start()
        assert _until(lambda: watch(("InService", 2, 2)), 120), timeline
        out_at = time.monotonic()
        assert _until(lambda: len({pid for at, pid in served if at > out_at + 2.5}) == 2, 30)  # both serve
        trickle.set()  # about 2 requests per 1 s period, on 2 instances 60 per instance per minute: under 108
        low_at = round(time.monotonic() - started, 1)
        assert _until(lambda: watch(("InService", 1, 1)), 150), timeline
    finally:
        stop.set()
        for sender in senders:
            sender.join(30)
        scaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                           ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    activities = scaling.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource)
    assert [(a["Description"], a["StatusCode"]) for a in activities["ScalingActivities"]] == [
        ("Setting desired instance count to 1.", "Successful"), ("Setting desired instance count to 2.", "Successful")]
    assert "AlarmLow" in activities["ScalingActivities"][0]["Cause"]
    print(f"\nauto-scaling rehearsal (period {PERIOD_S} s, target {POLICY['TargetValue']:.0f}/instance/min, "
          f"cooldowns out {POLICY['ScaleOutCooldown']} s in {POLICY['ScaleInCooldown']} s): load from 0 s, "
          f"trickle from {low_at} s; (seconds, status, current, desired): {timeline}")


def _ask(points: list, current: int = 1, now: float = 1000.0, **config) -> int | None:
    tracking = _Tracking()
    tracking.points.extend(points)
    return proposal(tracking, {"TargetValue": 60.0, **config}, current, now)


def test_scale_out_needs_three_datapoints_above_the_target_and_sizes_by_the_ratio():
    assert _ask([100.0, 130.0]) is None
    assert _ask([100.0, None, 130.0]) is None  # a missing datapoint is no breach
    assert _ask([100.0, 61.0, 130.0]) == 3  # ceil(1 * 130 / 60)
    assert _ask([100.0, 61.0, 130.0], current=2) == 5
    assert _ask([100.0, 60.0, 130.0]) is None  # at the target is not above it


def test_scale_in_needs_fifteen_low_datapoints_and_honours_its_cooldown_and_disable():
    assert _ask([10.0] * 14, current=3) is None
    assert _ask([10.0] * 15, current=3) == 1  # ceil(3 * 10 / 60)
    assert _ask([10.0] * 14 + [None], current=3) is None  # no traffic publishes nothing: no scale-in
    assert _ask([10.0] * 14 + [55.0], current=3) is None  # 55 is not under 90 % of 60
    assert _ask([10.0] * 15, current=3, DisableScaleIn=True) is None
    tracking = _Tracking(last_in=990.0)
    tracking.points.extend([10.0] * 15)
    assert proposal(tracking, {"TargetValue": 60.0, "ScaleInCooldown": 30}, 3, 1000.0) is None
    assert proposal(tracking, {"TargetValue": 60.0, "ScaleInCooldown": 30}, 3, 1021.0) == 1
    tracking = _Tracking(last_out=990.0)
    tracking.points.extend([100.0] * 3)
    assert proposal(tracking, {"TargetValue": 60.0, "ScaleOutCooldown": 60}, 1, 1000.0) is None


TEMPLATE = {
    "Parameters": {"Target": {"Type": "String"}},
    "Resources": {
        "ScalableTarget": {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ResourceId": "endpoint/stacked/variant/AllTraffic", "MinCapacity": 1, "MaxCapacity": 3}},
        "ScalingPolicy": {"Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
            "PolicyName": "stacked-invocations", "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": {"Ref": "ScalableTarget"}, "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": {"Ref": "Target"}, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}}},
    }}


def test_a_stacks_target_and_policy_scale_the_endpoint_and_go_with_the_stack(tmp_path):
    """Promotion's resources (``AWS::ApplicationAutoScaling::*``, the target value a parameter) in a stack on the
    emulator: registered, acted on (the variant's InvocationsPerInstance put above the target: 1 -> 3 instances,
    capped at MaxCapacity; hosting off, so the counts change at once), and removed with the stack."""
    server = emulator(tmp_path, DOGOPS_AUTOSCALING_PERIOD_S=1)
    try:
        sagemaker = client("sagemaker", server.url)
        sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        sagemaker.create_endpoint(EndpointName="stacked", EndpointConfigName="c")
        stacks = client("cloudformation", server.url)
        stacks.create_stack(StackName="scaling", TemplateBody=json.dumps(TEMPLATE),
                            Parameters=[{"ParameterKey": "Target", "ParameterValue": "60"}])
        scaling = client("application-autoscaling", server.url)
        target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in target] == [
            ("endpoint/stacked/variant/AllTraffic", 1, 3)]
        policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        assert [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] for p in policy] == [60.0]
        cloudwatch = client("cloudwatch", server.url)
        high, low = _alarms(cloudwatch, "stacked")
        assert sorted(a["AlarmName"] for a in policy[0]["Alarms"]) == [high["AlarmName"], low["AlarmName"]]

        dimensions = [{"Name": "EndpointName", "Value": "stacked"}, {"Name": "VariantName", "Value": "AllTraffic"}]

        def scaled() -> bool:  # 5 per second on 1 instance: 300 per minute, 5 times the target
            cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
                {"MetricName": "InvocationsPerInstance", "Value": 1.0, "Dimensions": dimensions}] * 5)
            return _counts(sagemaker, "stacked") != ("InService", 1, 1)

        assert _until(scaled, 30)
        assert _counts(sagemaker, "stacked") == ("InService", 3, 3)  # ceil(1 * 300 / 60) = 5, held at 3
        activity = scaling.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"][0]
        assert activity["ResourceId"] == "endpoint/stacked/variant/AllTraffic"
        assert activity["StatusCode"] == "Successful" and "triggered policy stacked-invocations" in activity["Cause"]
        assert f"monitor alarm {high['AlarmName']} in state ALARM" in activity["Cause"]

        stacks.delete_stack(StackName="scaling")
        assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
        assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
        assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    finally:
        server.stop()


def _alarms(cloudwatch, endpoint: str) -> list[dict]:
    """The target-tracking alarms of the endpoint's AllTraffic variant (High before Low), checked for AWS's shape."""
    found = cloudwatch.describe_alarms(AlarmNamePrefix=f"TargetTracking-endpoint/{endpoint}/variant/AllTraffic-")
    alarms = sorted(found["MetricAlarms"], key=lambda a: "AlarmLow" in a["AlarmName"])
    for alarm in alarms:
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
            "AWS/SageMaker", "InvocationsPerInstance", "Sum", 60)
        assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": endpoint},
                                       {"Name": "VariantName", "Value": "AllTraffic"}]
        assert alarm["AlarmDescription"].startswith("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy arn:")
        assert alarm["AlarmActions"][0].startswith("arn:aws:autoscaling:us-east-1:")
    if alarms:
        assert (alarms[0]["AlarmName"].split("-AlarmHigh-")[0], alarms[0]["ComparisonOperator"],
                alarms[0]["EvaluationPeriods"]) == (f"TargetTracking-endpoint/{endpoint}/variant/AllTraffic",
                                                    "GreaterThanThreshold", 3)
    if len(alarms) == 2:
        assert "-AlarmLow-" in alarms[1]["AlarmName"]
        assert (alarms[1]["ComparisonOperator"], alarms[1]["EvaluationPeriods"]) == ("LessThanThreshold", 15)
        assert alarms[1]["Threshold"] == pytest.approx(0.9 * alarms[0]["Threshold"])
    return alarms


def test_a_policys_alarms_follow_it_and_its_target(tmp_path):
    """The two alarms AWS creates for a target-tracking policy: in CloudWatch with the policy, replaced when it
    changes (only the high one with DisableScaleIn), gone with it; deregistering the target deletes its policies."""
    server = emulator(tmp_path)
    try:
        scaling = client("application-autoscaling", server.url)
        cloudwatch = client("cloudwatch", server.url)
        resource = "endpoint/watched/variant/AllTraffic"
        scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource, MinCapacity=1,
                                         MaxCapacity=2, ScalableDimension="sagemaker:variant:DesiredInstanceCount")

        def put(**config) -> dict:
            return scaling.put_scaling_policy(
                PolicyName="tracked", ServiceNamespace="sagemaker", ResourceId=resource,
                PolicyType="TargetTrackingScaling", ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                TargetTrackingScalingPolicyConfiguration={**config, "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})

        answer = put(TargetValue=200.0)
        high, low = _alarms(cloudwatch, "watched")
        assert sorted(a["AlarmName"] for a in answer["Alarms"]) == [high["AlarmName"], low["AlarmName"]]
        assert (high["Threshold"], low["Threshold"], high["StateValue"]) == (200.0, 180.0, "INSUFFICIENT_DATA")
        put(TargetValue=300.0, DisableScaleIn=True)
        [high] = _alarms(cloudwatch, "watched")
        assert high["Threshold"] == 300.0
        scaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                           ScalableDimension="sagemaker:variant:DesiredInstanceCount")
        assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
        assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    finally:
        server.stop()
