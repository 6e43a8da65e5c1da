"""``dogops logs`` (the real console script) against a real emulator: a job's streams interleaved by time, only that
job's, ``--since`` keeping the recent lines, ``--follow`` printing lines written after it started (until Ctrl-C),
and a followed job's log ending with the job."""

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dogops.logs import since
from services.stack import settings

from ..services.processes import client, emulator

DOGOPS = Path(sys.executable).parent / "dogops"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    server = emulator(tmp_path_factory.mktemp("dogops-logs"))
    yield server.url
    server.stop()


def _env(url: str) -> dict:
    return {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": settings.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": settings.root_secret(), "AWS_DEFAULT_REGION": settings.REGION}


def _put(logs, group: str, stream: str, events: list[tuple[int, str]]) -> None:
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": t, "message": m} for t, m in events])


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_a_jobs_streams_interleaved_by_time_and_since(url):
    logs = client("logs", url)
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    group = "/aws/sagemaker/TrainingJobs"
    _put(logs, group, "job-a/algo-1-100", [(_ms(old), "host 1 early"), (_ms(old) + 2000, "host 1 late")])
    _put(logs, group, "job-a/algo-2-100", [(_ms(old) + 1000, "host 2 middle")])
    _put(logs, group, "job-ab/algo-1-100", [(_ms(old) + 500, "another job")])
    recent = datetime.now(timezone.utc) - timedelta(minutes=1)
    _put(logs, group, "job-a/algo-2-100", [(_ms(recent), "host 2 recent")])

    result = subprocess.run([DOGOPS, "logs", "job", "job-a"], env=_env(url), capture_output=True, text=True,
                            timeout=60, check=True)
    lines = [line.split(" ", 2) for line in result.stdout.splitlines()]
    assert [(stream, message) for _, stream, message in lines] == [
        ("job-a/algo-1-100", "host 1 early"), ("job-a/algo-2-100", "host 2 middle"),
        ("job-a/algo-1-100", "host 1 late"), ("job-a/algo-2-100", "host 2 recent")]
    assert lines[0][0] == old.isoformat(timespec="milliseconds")

    result = subprocess.run([DOGOPS, "logs", "job", "job-a", "--since", "10m"], env=_env(url), capture_output=True,
                            text=True, timeout=60, check=True)
    assert [line.split(" ", 2)[2] for line in result.stdout.splitlines()] == ["host 2 recent"]
    result = subprocess.run([DOGOPS, "logs", "function", "nothing-here"], env=_env(url), capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout == "" and "no log lines in /aws/lambda/nothing-here" in result.stderr


def test_follow_prints_what_comes_later_until_interrupted(url):
    logs = client("logs", url)
    group = "/aws/lambda/followed"
    _put(logs, group, "2026/12/03/[$LATEST]abc", [(_ms(datetime.now(timezone.utc)), "START RequestId: 1\n")])
    # Ctrl-C as in a terminal: a shell's background job (CI's, perhaps) passes SIGINT on ignored, and Python
    # then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen([DOGOPS, "logs", "function", "followed", "--follow"], env=_env(url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().rstrip("\n").endswith(" 2026/12/03/[$LATEST]abc START RequestId: 1")
        for n in (2, 3):
            _put(logs, group, "2026/12/03/[$LATEST]abc", [(_ms(datetime.now(timezone.utc)), f"END RequestId: {n}\n")])
            assert proc.stdout.readline().rstrip("\n").endswith(f" END RequestId: {n}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == ""  # nothing printed twice
    finally:
        proc.kill()


def test_following_a_job_ends_with_the_job(url):
    sagemaker = client("sagemaker", url)
    sagemaker.create_training_job(  # no data under its channel: it fails while downloading, at once
        TrainingJobName="short-job", RoleArn="arn:aws:iam::123456789012:role/sm",
        AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                "TrainingInputMode": "File"},
        InputDataConfig=[{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "ManifestFile", "S3Uri": "s3://none/manifest"}}}],
        OutputDataConfig={"S3OutputPath": "s3://none/out"}, StoppingCondition={"MaxRuntimeInSeconds": 60},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1})
    _put(client("logs", url), "/aws/sagemaker/TrainingJobs", "short-job/algo-1-1", [
        (_ms(datetime.now(timezone.utc)), "the only line")])
    result = subprocess.run([DOGOPS, "logs", "job", "short-job", "--follow"], env=_env(url), capture_output=True,
                            text=True, timeout=120, check=True)
    assert [line.split(" ", 2)[2] for line in result.stdout.splitlines()] == ["the only line"]
    assert sagemaker.describe_training_job(TrainingJobName="short-job")["TrainingJobStatus"] == "Failed"


@pytest.mark.parametrize("text, minutes", [("30s", 0.5), ("10m", 10), ("2h", 120), ("1d", 1440), ("1w", 10080)])
def test_since_takes_aws_logs_tails_durations(text, minutes):
    now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    assert since(text, now) == _ms(now - timedelta(minutes=minutes))
    assert since("2026-12-03T11:00:00", now) == _ms(datetime(2026, 12, 3, 11, tzinfo=timezone.utc))


def test_a_bad_since_is_a_usage_error():
    result = subprocess.run([DOGOPS, "logs", "job", "x", "--since", "yesterday"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--since takes 30s, 10m" in result.stderr
