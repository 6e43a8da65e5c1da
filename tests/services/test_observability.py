"""The stack's CloudWatch writers (services/observability) against a real emulator, read back with boto3: every
log event in order across batches and streams, metric samples folded without losing a count."""

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from services.observability.cloudwatch_logs import MAX_BATCH_EVENTS, LogWriter
from services.observability.metrics import MetricPublisher

from .processes import client, emulator


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    server = emulator(tmp_path_factory.mktemp("observability"))
    yield server.url
    server.stop()


def _events(logs, group: str, stream: str) -> list[dict]:
    events, token = [], None
    while True:
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        events += page["events"]
        if page["nextForwardToken"] == token or not page["events"]:
            return events
        token = page["nextForwardToken"]


def test_every_event_arrives_in_order_in_batches_within_put_log_events_limits(url):
    logs = client("logs", url)
    writer = LogWriter(logs, interval=0.2)
    base = int(time.time() * 1000)
    count = MAX_BATCH_EVENTS + 2500  # more than one PutLogEvents call
    writers = [threading.Thread(target=lambda s=s: [writer.write("/test/group", f"stream-{s}", f"line {i}", base + i)
                                                    for i in range(count if s == 0 else 10)]) for s in range(3)]
    for thread in writers:
        thread.start()
    writer.write("/test/group", "stream-1", "   ")  # CloudWatch Logs takes no empty event
    writer.write("/test/group", "stream-2", "é" * 300_000, base + 20)  # over the 256 KiB event limit: cut
    for thread in writers:
        thread.join()
    writer.close()
    assert writer.dropped == 0
    first = _events(logs, "/test/group", "stream-0")
    assert [e["message"] for e in first] == [f"line {i}" for i in range(count)]
    assert [e["timestamp"] for e in first] == [base + i for i in range(count)]
    assert [e["message"] for e in _events(logs, "/test/group", "stream-1")] == [f"line {i}" for i in range(10)]
    last = _events(logs, "/test/group", "stream-2")
    assert len(last) == 11 and len(last[-1]["message"].encode()) <= 262_144 - 26 and set(last[-1]["message"]) == {"é"}


def test_a_stream_deleted_meanwhile_is_made_again(url):
    logs = client("logs", url)
    writer = LogWriter(logs, interval=60)
    writer.write("/test/again", "s", "one")
    writer.flush()
    logs.delete_log_group(logGroupName="/test/again")
    writer.write("/test/again", "s", "two")
    writer.flush()
    assert [e["message"] for e in _events(logs, "/test/again", "s")] == ["two"]


def test_samples_are_folded_per_second_without_losing_a_count(url):
    publisher = MetricPublisher(lambda region: client("cloudwatch", url, region), interval=0.2)
    now = time.time()
    dims = (("EndpointName", "ep"), ("VariantName", "AllTraffic"))
    values = [float(i % 7) for i in range(500)]
    for i, value in enumerate(values):
        publisher.record("Test/Metrics", "Latency", value, "Microseconds", dims, now - (i % 3))
    publisher.record("Test/Metrics", "Latency", 1.0, "Microseconds", (("EndpointName", "other"),), now)
    publisher.close()
    assert publisher.dropped == 0
    cloudwatch = client("cloudwatch", url)
    points = cloudwatch.get_metric_statistics(
        Namespace="Test/Metrics", MetricName="Latency", Dimensions=[{"Name": k, "Value": v} for k, v in dims],
        StartTime=datetime.now(timezone.utc) - timedelta(minutes=5), EndTime=datetime.now(timezone.utc) + timedelta(
            minutes=1), Period=3600, Statistics=["SampleCount", "Sum", "Minimum", "Maximum"])["Datapoints"]
    assert len(points) == 1
    assert points[0]["SampleCount"] == 500 and points[0]["Sum"] == sum(values)
    assert (points[0]["Minimum"], points[0]["Maximum"], points[0]["Unit"]) == (0.0, 6.0, "Microseconds")


def test_a_full_queue_drops_and_counts_instead_of_blocking(url):
    publisher = MetricPublisher(lambda region: client("cloudwatch", url, region), interval=3600, max_queue=10)
    for _ in range(25):
        publisher.record("Test/Full", "Count", 1)
    assert publisher.dropped == 15
