"""A natively hosted endpoint seen through CloudWatch, read back with boto3 from a real emulator after real
invocations through a real gateway: its model server's log in ``/aws/sagemaker/Endpoints/<endpoint>`` (stream
``<variant>/<instance id>``, line for line what the server wrote), its ``AWS/SageMaker`` invocation metrics,
``ModelSetupTime``, and its instance's CPU and memory use in ``/aws/sagemaker/Endpoints``."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from .processes import client, emulator, gateway
from .test_native_hosting import FAST_WAIT, _config, _invoke, _model, _net, _scripted

ENDPOINT = "watched"
DIMS = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),
              pytest.mark.slow]  # a model server's start: 30-45 s on 2 shared cores


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("endpoint-observability")
    server = emulator(logs, DOGOPS_HOSTING="native", DOGOPS_HOSTING_DIR=logs / "hosting", DOGOPS_HOSTING_TIMEOUT=120,
                      DOGOPS_INSTANCE_METRICS_S=1)
    gw = gateway(logs, server.url)
    client("s3", server.url).create_bucket(Bucket="models")
    yield server, gw, logs / "hosting"
    gw.stop()
    server.stop()


def _points(cloudwatch, namespace: str, name: str, statistics: list[str]) -> list[dict]:
    now = datetime.now(timezone.utc)
    return cloudwatch.get_metric_statistics(Namespace=namespace, MetricName=name, Dimensions=DIMS,
                                            StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1),
                                            Period=3600, Statistics=statistics)["Datapoints"]


def _until(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def test_the_servers_log_and_metrics_reach_cloudwatch(stack):
    server, _, hosting = stack
    sagemaker, logs, cloudwatch = (client(s, server.url) for s in ("sagemaker", "logs", "cloudwatch"))
    _model(stack, ENDPOINT, {"model.pt": _scripted(_net(3))})
    _config(stack, ENDPOINT, {"AllTraffic": (ENDPOINT, 1.0)})
    created = time.monotonic()
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig=FAST_WAIT)
    to_in_service = time.monotonic() - created
    for _ in range(5):
        assert _invoke(stack, ENDPOINT)[0] == "AllTraffic"

    group = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
    written = [line for path in hosting.glob(f"{ENDPOINT}-*/AllTraffic/serve.log")
               for line in path.read_text().splitlines() if line.strip()]
    assert written

    def events() -> list[str]:
        try:
            streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        except logs.exceptions.ResourceNotFoundException:  # its first lines are not sent yet
            return []
        assert [bool(re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", s["logStreamName"])) for s in streams] == [True]
        found = logs.get_log_events(logGroupName=group, logStreamName=streams[0]["logStreamName"],
                                    startFromHead=True)["events"]
        return [e["message"] for e in found]
    assert _until(lambda: len(events()) >= len(written))
    assert events()[:len(written)] == written

    assert _until(lambda: _points(cloudwatch, "AWS/SageMaker", "Invocations", ["Sum"]))[0]["Sum"] == 5
    setup = _points(cloudwatch, "AWS/SageMaker", "ModelSetupTime", ["SampleCount", "Maximum"])
    assert setup[0]["SampleCount"] == 1 and 0 < setup[0]["Maximum"] < to_in_service * 1e6
    assert setup[0]["Unit"] == "Microseconds"
    cpu = _until(lambda: _points(cloudwatch, "/aws/sagemaker/Endpoints", "CPUUtilization", ["Maximum", "Minimum"]))
    memory = _points(cloudwatch, "/aws/sagemaker/Endpoints", "MemoryUtilization", ["Maximum", "Minimum"])
    assert cpu[0]["Unit"] == memory[0]["Unit"] == "Percent"
    assert cpu[0]["Minimum"] >= 0 and 0 < memory[0]["Minimum"] <= memory[0]["Maximum"] < 100

    sagemaker.delete_endpoint(EndpointName=ENDPOINT)  # the log stays, as on AWS
    assert _until(lambda: not any(hosting.iterdir()))
    assert events()[:len(written)] == written


def test_a_failed_endpoints_log_says_why(stack):
    """As AWS's FailureReason asks ("Please check CloudWatch logs for this endpoint"): the server's error is there."""
    server = stack[0]
    sagemaker, logs = client("sagemaker", server.url), client("logs", server.url)
    _model(stack, "broken", {"model.pth": b"not a TorchScript archive"})
    _config(stack, "broken", {"AllTraffic": ("broken", 1.0)})
    sagemaker.create_endpoint(EndpointName="broken", EndpointConfigName="broken")
    assert _until(lambda: sagemaker.describe_endpoint(EndpointName="broken")["EndpointStatus"] == "Failed", 120)
    reason = sagemaker.describe_endpoint(EndpointName="broken")["FailureReason"]
    assert "Please check CloudWatch logs for this endpoint" in reason

    def messages() -> list[str]:
        return [e["message"] for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName="/aws/sagemaker/Endpoints/broken") for e in page["events"]]
    assert _until(lambda: any("Please ensure model is saved using torchscript" in m for m in messages()))
    sagemaker.delete_endpoint(EndpointName="broken")
