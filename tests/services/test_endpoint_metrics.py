"""SageMaker's endpoint metrics (``AWS/SageMaker``), read back with boto3 ``cloudwatch`` from a real emulator after
real ``InvokeEndpoint`` calls through a real gateway: counts exact, latencies within what the model server and the
caller measured themselves."""

import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler

import pytest

from . import processes
from .test_sagemaker_runtime import create_endpoint

VARIANT = "primary-variant"
DIMS = [{"Name": "EndpointName", "Value": "metered"}, {"Name": "VariantName", "Value": VARIANT}]


class Model(processes.LoopbackServer):
    """A model server stand-in: answers the status the request's body names after sleeping its milliseconds, and
    says in its custom attributes how long it took itself (``served_us=``)."""

    def __init__(self):
        super().__init__(ModelHandler)


class ModelHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        started = time.perf_counter()
        status, sleep_ms = (int(x) for x in self.rfile.read(int(self.headers["Content-Length"])).split(b","))
        time.sleep(sleep_ms / 1000)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.send_header("X-Amzn-SageMaker-Custom-Attributes", f"served_us={(time.perf_counter() - started) * 1e6:.0f}")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    emulator = processes.emulator(tmp_path_factory.mktemp("metrics"))
    create_endpoint(emulator.url, "metered", VARIANT)
    model = Model()
    processes.route(emulator.url, "metered", model.url)
    gateway = processes.gateway(emulator.log.parent, emulator.url)
    yield emulator, gateway
    gateway.stop()
    model.shutdown()
    emulator.stop()


def _statistics(cloudwatch, name: str, statistics: list[str]) -> dict:
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(Namespace="AWS/SageMaker", MetricName=name, Dimensions=DIMS,
                                              StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1),
                                              Period=3600, Statistics=statistics)["Datapoints"]
    assert len(points) <= 1
    return points[0] if points else {}


def test_invocations_errors_and_latencies_as_sent(stack):
    emulator, gateway = stack
    runtime = processes.client("sagemaker-runtime", gateway.url, retries={"max_attempts": 0})
    sent = [(200, 30)] * 6 + [(400, 0)] * 3 + [(503, 0)] * 2
    client_us, served_us = [], []
    for status, sleep_ms in sent:
        started = time.perf_counter()
        try:
            answer = runtime.invoke_endpoint(EndpointName="metered", Body=f"{status},{sleep_ms}".encode())
            served_us.append(int(answer["CustomAttributes"].removeprefix("served_us=")))
        except runtime.exceptions.ModelError as error:
            assert error.response["OriginalStatusCode"] == status
        client_us.append((time.perf_counter() - started) * 1e6)
    cloudwatch = processes.client("cloudwatch", emulator.url)
    deadline = time.monotonic() + 30
    while _statistics(cloudwatch, "Invocations", ["Sum"]).get("Sum", 0) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # anything more (a double count) would be flushed by now

    assert _statistics(cloudwatch, "Invocations", ["Sum", "SampleCount"]) | {"Timestamp": None} == {
        "Timestamp": None, "Sum": 11.0, "SampleCount": 11.0, "Unit": "None"}
    assert _statistics(cloudwatch, "InvocationsPerInstance", ["Sum"])["Sum"] == 11.0
    assert _statistics(cloudwatch, "Invocation4XXErrors", ["Sum", "Average"])["Sum"] == 3.0
    assert _statistics(cloudwatch, "Invocation5XXErrors", ["Sum"])["Sum"] == 2.0
    assert _statistics(cloudwatch, "InvocationModelErrors", ["Sum"])["Sum"] == 5.0
    model = _statistics(cloudwatch, "ModelLatency", ["SampleCount", "Minimum", "Maximum", "Sum"])
    overhead = _statistics(cloudwatch, "OverheadLatency", ["SampleCount", "Maximum", "Sum"])
    assert model["Unit"] == overhead["Unit"] == "Microseconds"
    now = datetime.now(timezone.utc)
    tail = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS, StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1), Period=3600, ExtendedStatistics=["p50", "p100"])["Datapoints"][0]
    assert tail["ExtendedStatistics"]["p100"] == model["Maximum"]
    assert model["Minimum"] <= tail["ExtendedStatistics"]["p50"] <= model["Maximum"]
    assert model["SampleCount"] == overhead["SampleCount"] == 11
    assert model["Sum"] >= sum(served_us) and model["Maximum"] >= max(served_us) >= 30_000  # it slept 30 ms in 6
    assert model["Sum"] + overhead["Sum"] <= sum(client_us)  # both within what the caller waited
    assert 0 < overhead["Maximum"] < max(client_us)
