"""An endpoint hosted in a container (the serving image) seen through CloudWatch, read back with boto3: the
container's log in ``/aws/sagemaker/Endpoints/<endpoint>`` (stream ``<variant>/<instance id>``), ``ModelSetupTime``
as the hoster measured it, and the container's CPU and memory use (``docker stats``). Image tier: needs Docker and
``dogops-serving:dev`` (DOGOPS_TEST_IMAGES=1)."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from services.hosting import endpoints as hosting

from .processes import client
from .test_hosting import _predict, local, needs_docker, session  # noqa: F401 (fixtures)

DIMS = [{"Name": "EndpointName", "Value": "contained"}, {"Name": "VariantName", "Value": "AllTraffic"}]


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


@needs_docker
def test_a_containers_log_and_use_reach_cloudwatch(local, session, sample, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DOGOPS_INSTANCE_METRICS_S", "1")
    emulator_url, gateway_url = local
    sagemaker, logs, cloudwatch = (client(s, emulator_url) for s in ("sagemaker", "logs", "cloudwatch"))
    sagemaker.create_endpoint(EndpointName="contained", EndpointConfigName="one")
    try:
        [hosted] = hosting.host_endpoint("contained", session)
        assert '"004.Akita"' in _predict(gateway_url, "contained", sample[0])

        def messages() -> list[tuple[str, str]]:
            try:
                return [(e["logStreamName"], e["message"]) for page in logs.get_paginator(
                    "filter_log_events").paginate(logGroupName="/aws/sagemaker/Endpoints/contained")
                        for e in page["events"]]
            except logs.exceptions.ResourceNotFoundException:  # its first lines are not sent yet
                return []
        assert _until(lambda: any("Listening at" in m for _, m in messages()))
        assert {bool(re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", s)) for s, _ in messages()} == {True}

        setup = _until(lambda: _points(cloudwatch, "AWS/SageMaker", "ModelSetupTime", ["Maximum", "SampleCount"]))
        assert setup[0]["SampleCount"] == 1 and setup[0]["Maximum"] == pytest.approx(hosted.ready_s * 1e6)
        cpu = _until(lambda: _points(cloudwatch, "/aws/sagemaker/Endpoints", "CPUUtilization", ["Minimum"]))
        memory = _points(cloudwatch, "/aws/sagemaker/Endpoints", "MemoryUtilization", ["Minimum", "Maximum"])
        assert cpu[0]["Minimum"] >= 0 and cpu[0]["Unit"] == "Percent"
        assert 0 < memory[0]["Minimum"] <= memory[0]["Maximum"] < 100
    finally:
        hosting.unhost_endpoint("contained", session)
        sagemaker.delete_endpoint(EndpointName="contained")
