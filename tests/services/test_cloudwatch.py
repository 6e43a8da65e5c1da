"""CloudWatch on the emulator as AWS answers it (services/emulator/cloudwatch.py), through boto3: datapoints per
period aligned to the minute, a metric found only by its whole set of dimensions, percentiles of values and counts, and
alarms whose state is evaluated from the data (every second here); its logs through the AWS CLI v2's ``logs tail``."""

import os
import queue
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from services.stack import settings

from .processes import client, emulator

DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    server = emulator(tmp_path_factory.mktemp("cloudwatch"), DOGOPS_ALARM_EVALUATION_S="1")
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def cloudwatch(url):
    return client("cloudwatch", url)


def test_datapoints_are_per_period_from_the_minute_and_need_every_dimension(cloudwatch):
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5)
    for offset, value in ((50, 1.0), (55, 3.0), (70, 10.0)):  # two in one minute, one in the next
        cloudwatch.put_metric_data(Namespace="Test/Align", MetricData=[{
            "MetricName": "Latency", "Dimensions": DIMS, "Value": value, "Unit": "Microseconds",
            "Timestamp": minute + timedelta(seconds=offset)}])
    points = cloudwatch.get_metric_statistics(
        Namespace="Test/Align", MetricName="Latency", Dimensions=DIMS, StartTime=minute + timedelta(seconds=30),
        EndTime=minute + timedelta(minutes=3), Period=60, Statistics=["Average", "SampleCount"])["Datapoints"]
    assert sorted((p["Timestamp"], p["Average"], p["SampleCount"], p["Unit"]) for p in points) == [
        (minute, 2.0, 2.0, "Microseconds"), (minute + timedelta(minutes=1), 10.0, 1.0, "Microseconds")]
    assert cloudwatch.get_metric_statistics(
        Namespace="Test/Align", MetricName="Latency", Dimensions=DIMS[:1], StartTime=minute,
        EndTime=minute + timedelta(minutes=3), Period=60, Statistics=["Sum"])["Datapoints"] == []


def test_percentiles_of_the_values_sent(cloudwatch):
    now = datetime.now(timezone.utc)
    cloudwatch.put_metric_data(Namespace="Test/Percentiles", MetricData=[{
        "MetricName": "Latency", "Values": [float(v) for v in range(1, 101)], "Timestamp": now}])
    points = cloudwatch.get_metric_statistics(
        Namespace="Test/Percentiles", MetricName="Latency", StartTime=now - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1), Period=300, ExtendedStatistics=["p50", "p99", "p100"])["Datapoints"]
    assert [p["ExtendedStatistics"] for p in points] == [{"p50": 50.0, "p99": 99.0, "p100": 100.0}]
    cloudwatch.put_metric_data(Namespace="Test/Percentiles", MetricData=[{
        "MetricName": "Counted", "Values": [1.0, 2.0, 3.0], "Counts": [98, 1, 1], "Timestamp": now}])
    counted = cloudwatch.get_metric_statistics(
        Namespace="Test/Percentiles", MetricName="Counted", StartTime=now - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1), Period=300, Statistics=["SampleCount", "Sum"],
        ExtendedStatistics=["p50", "p99", "p100"])["Datapoints"]
    assert [(p["SampleCount"], p["Sum"], p["ExtendedStatistics"]) for p in counted] == [
        (100.0, 103.0, {"p50": 1.0, "p99": 2.0, "p100": 3.0})]
    cloudwatch.put_metric_data(Namespace="Test/Percentiles", MetricData=[{
        "MetricName": "Counted", "StatisticValues": {"SampleCount": 1, "Sum": 5, "Minimum": 5, "Maximum": 5},
        "Timestamp": now}])
    assert "ExtendedStatistics" not in cloudwatch.get_metric_statistics(  # no values to take them from, as on AWS
        Namespace="Test/Percentiles", MetricName="Counted", StartTime=now - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1), Period=300, ExtendedStatistics=["p50"])["Datapoints"][0]
    with pytest.raises(cloudwatch.exceptions.ClientError, match="not supported"):
        cloudwatch.get_metric_statistics(Namespace="Test/Percentiles", MetricName="Latency", StartTime=now,
                                         EndTime=now + timedelta(minutes=1), Period=60, ExtendedStatistics=["q9"])


def test_get_metric_data_per_minute_with_percentiles(cloudwatch):
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=4)
    for offset, values in ((10, [1.0, 2.0, 3.0, 4.0]), (70, [10.0])):  # two minutes; a third without data
        cloudwatch.put_metric_data(Namespace="Test/Data", MetricData=[{
            "MetricName": "Latency", "Dimensions": DIMS, "Values": values, "Timestamp": minute + timedelta(seconds=offset)}])
    cloudwatch.put_metric_data(Namespace="Test/Other", MetricData=[{  # same name and dimensions, another namespace
        "MetricName": "Latency", "Dimensions": DIMS, "Value": 1000.0, "Timestamp": minute + timedelta(seconds=20)}])

    def stat(name: str, dims=DIMS) -> dict:
        return {"Metric": {"Namespace": "Test/Data", "MetricName": "Latency", "Dimensions": dims}, "Period": 60,
                "Stat": name}

    answer = cloudwatch.get_metric_data(
        StartTime=minute + timedelta(seconds=30), EndTime=minute + timedelta(minutes=3), ScanBy="TimestampAscending",
        MetricDataQueries=[{"Id": "n", "MetricStat": stat("SampleCount")}, {"Id": "p50", "MetricStat": stat("p50")},
                           {"Id": "p99", "MetricStat": stat("p99")}, {"Id": "some", "MetricStat": stat("Sum", DIMS[:1])},
                           {"Id": "hidden", "MetricStat": stat("Sum"), "ReturnData": False}])
    got = {r["Id"]: (r["Timestamps"], r["Values"]) for r in answer["MetricDataResults"]}
    minutes = [minute, minute + timedelta(minutes=1)]
    assert got == {"n": (minutes, [4.0, 1.0]), "p50": (minutes, [2.0, 10.0]), "p99": (minutes, [4.0, 10.0]),
                   "some": ([], [])}
    newest_first = cloudwatch.get_metric_data(StartTime=minute, EndTime=minute + timedelta(minutes=3),
                                              MetricDataQueries=[{"Id": "n", "MetricStat": stat("SampleCount")}])
    assert newest_first["MetricDataResults"][0]["Values"] == [1.0, 4.0]


def _state(cloudwatch, name: str, wanted: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        if alarm["StateValue"] == wanted or time.monotonic() > deadline:
            return alarm
        time.sleep(0.3)


def test_an_alarm_is_evaluated_from_the_data(cloudwatch):
    alarm = {"AlarmName": "too-many", "Namespace": "Test/Alarm", "MetricName": "Invocations", "Dimensions": DIMS,
             "Statistic": "Sum", "Period": 10, "EvaluationPeriods": 1, "Threshold": 5.0,
             "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}
    cloudwatch.put_metric_alarm(**{**alarm, "AlarmName": "never-fed", "TreatMissingData": "missing"})
    cloudwatch.put_metric_alarm(**alarm)
    assert cloudwatch.describe_alarms(AlarmNames=["too-many"])["MetricAlarms"][0]["StateValue"] in (
        "INSUFFICIENT_DATA", "OK")  # OK once evaluated: no data is not breaching
    cloudwatch.put_metric_data(Namespace="Test/Alarm", MetricData=[{
        "MetricName": "Invocations", "Dimensions": DIMS, "StatisticValues": {
            "SampleCount": 9, "Sum": 9, "Minimum": 1, "Maximum": 1}}])
    fired = _state(cloudwatch, "too-many", "ALARM")
    assert fired["StateValue"] == "ALARM", fired
    assert "[9.0 (" in fired["StateReason"] and "greater than the threshold (5.0)" in fired["StateReason"]
    assert _state(cloudwatch, "too-many", "OK")["StateValue"] == "OK"  # 10 s on, its period holds no data
    assert _state(cloudwatch, "never-fed", "OK", timeout=2)["StateValue"] == "INSUFFICIENT_DATA"
    history = cloudwatch.describe_alarm_history(AlarmName="too-many")["AlarmHistoryItems"]
    assert history[0]["HistorySummary"] == "Alarm updated from ALARM to OK"
    assert history[1]["HistorySummary"].endswith(" to ALARM") and history[1]["HistoryItemType"] == "StateUpdate"


def test_filter_log_events_takes_a_stream_prefix_and_interleaves(url):
    logs = client("logs", url)
    logs.create_log_group(logGroupName="/test/filter")
    base = int(time.time() * 1000) - 60_000
    for stream, times in (("job-a/algo-1-1", (1, 3)), ("job-a/algo-2-1", (2, 4)), ("job-ab/algo-1-1", (0,))):
        logs.create_log_stream(logGroupName="/test/filter", logStreamName=stream)
        logs.put_log_events(logGroupName="/test/filter", logStreamName=stream,
                            logEvents=[{"timestamp": base + t, "message": f"{stream} {t}"} for t in times])
    events = logs.filter_log_events(logGroupName="/test/filter", logStreamNamePrefix="job-a/")["events"]
    assert [e["message"] for e in events] == ["job-a/algo-1-1 1", "job-a/algo-2-1 2", "job-a/algo-1-1 3",
                                              "job-a/algo-2-1 4"]
    assert logs.filter_log_events(logGroupName="/test/filter", logStreamNamePrefix="nothing/")["events"] == []
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.filter_log_events(logGroupName="/test/filter", logStreamNamePrefix="job-a/", logStreamNames=["x"])


def _cli_v2() -> str | None:
    """An AWS CLI v2 here (``logs tail`` is v2's: Debian's ``awscli`` package, which CI installs), else None."""
    for found in (shutil.which("aws"), "/usr/bin/aws"):
        if found and os.path.exists(found):
            version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
            if version.startswith("aws-cli/2."):
                return found
    return None


@pytest.mark.skipif(_cli_v2() is None, reason="needs the AWS CLI v2 (apt-get install awscli; CI installs it)")
def test_aws_logs_tail_prints_and_follows_a_group(url, tmp_path):
    """``aws logs tail GROUP --follow`` (the AWS CLI v2, not written here) on the emulator: the events so far, every
    stream interleaved by time, then one put while it follows."""
    logs = client("logs", url)
    logs.create_log_group(logGroupName="/test/tail")
    now = int(time.time() * 1000)
    for stream, offset in (("a", 2), ("b", 1)):
        logs.create_log_stream(logGroupName="/test/tail", logStreamName=stream)
        logs.put_log_events(logGroupName="/test/tail", logStreamName=stream,
                            logEvents=[{"timestamp": now - 60_000 + offset, "message": f"from {stream}"}])
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": settings.ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": settings.root_secret(), "AWS_DEFAULT_REGION": settings.REGION}
    tail = [_cli_v2(), "logs", "tail", "/test/tail", "--endpoint-url", url, "--since", "10m", "--format", "short"]
    printed = subprocess.run(tail, env=env, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert [line.split(" ", 1)[1] for line in printed.stdout.splitlines()] == ["from b", "from a"]
    following = subprocess.Popen([*tail, "--follow"], env={**env, "PYTHONUNBUFFERED": "1"},  # as on a terminal
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in following.stdout], daemon=True).start()
    try:
        assert [lines.get(timeout=30).split(" ", 1)[1] for _ in range(2)] == ["from b\n", "from a\n"]
        logs.put_log_events(logGroupName="/test/tail", logStreamName="a",
                            logEvents=[{"timestamp": int(time.time() * 1000), "message": "while following"}])
        assert lines.get(timeout=30).endswith(" while following\n")  # it asks again every 5 s
    finally:
        following.kill()
        following.wait()
