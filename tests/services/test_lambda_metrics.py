"""Lambda's metrics (``AWS/Lambda``) read back with boto3 ``cloudwatch`` from a real emulator after real invocations
through a real gateway: Invocations and Errors exact, Duration the sum of the REPORT lines' durations, Throttles
for a function with no concurrency, ConcurrentExecutions seen."""

import base64
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from . import processes

SOURCE = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    emulator = processes.emulator(tmp_path_factory.mktemp("lambda-metrics"))
    processes.deploy_function(emulator.url, "measured", SOURCE)
    processes.deploy_function(emulator.url, "closed", SOURCE, concurrency=0)
    gateway = processes.gateway(emulator.log.parent, emulator.url)
    yield emulator, gateway
    gateway.stop()
    emulator.stop()


def _stat(cloudwatch, name: str, function: str, statistic: str) -> float | None:
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda", MetricName=name, Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=[statistic])["Datapoints"]
    return points[0][statistic] if points else None


def test_invocations_errors_durations_and_throttles_as_they_happened(stack):
    emulator, gateway = stack
    lam = processes.client("lambda", gateway.url, retries={"max_attempts": 0})
    durations = []
    for fail in (False, False, True, False, True, False):
        out = lam.invoke(FunctionName="measured", Payload=b'{"fail": %s}' % (b"true" if fail else b"false"),
                         LogType="Tail")
        assert ("FunctionError" in out) == fail
        report = re.search(r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms", base64.b64decode(out["LogResult"]).decode())
        durations.append(float(report[1]))
    with pytest.raises(lam.exceptions.TooManyRequestsException):
        lam.invoke(FunctionName="closed", Payload=b"{}")

    cloudwatch = processes.client("cloudwatch", emulator.url)
    deadline = time.monotonic() + 30
    while (_stat(cloudwatch, "Invocations", "measured", "Sum") or 0) < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # a double count would be in by now
    assert _stat(cloudwatch, "Invocations", "measured", "Sum") == 6
    assert _stat(cloudwatch, "Errors", "measured", "Sum") == 2
    assert _stat(cloudwatch, "Duration", "measured", "SampleCount") == 6
    assert _stat(cloudwatch, "Duration", "measured", "Sum") == pytest.approx(sum(durations), abs=0.01 * 6)
    assert _stat(cloudwatch, "Throttles", "closed", "Sum") == 1
    assert _stat(cloudwatch, "Invocations", "closed", "Sum") is None  # a throttled request is no invocation
    assert _stat(cloudwatch, "ConcurrentExecutions", "measured", "Maximum") == 1
