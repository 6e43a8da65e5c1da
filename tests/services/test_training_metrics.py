"""A training job's logs and metrics as the SageMaker SDK v2 reads them from the local stack (issue 15's
``TrainingJobAnalytics``, issue 18's logs): a real job of the user's script on a real emulator, ``fit(logs="All")``
printing the job's CloudWatch log lines as they come, and ``TrainingJobAnalytics`` giving per minute the average of
the values the script logged (what CloudWatch gives the SDK on AWS)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from services.stack import settings

from ..sdk_venvs import sdk_python
from .processes import client, emulator

BUCKET = "sdk-metrics"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-training:dev"
LOSS = re.compile(r"\btest_loss=([0-9.eE+-]+)")


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    server = emulator(tmp_path_factory.mktemp("training-metrics"))
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/train/x.txt", Body=b"the script reads no data")
    yield server.url
    server.stop()


@pytest.mark.slow  # the SDK's import and polling: about 30 s
def test_the_sdk_prints_the_jobs_log_and_reads_its_metrics(aws, tmp_path):
    name = "sdk-v2-analytics"
    arguments = {"bucket": BUCKET, "data": f"s3://{BUCKET}/data", "image": IMAGE, "name": name,
                 "role": "arn:aws:iam::123456789012:role/dogops-training"}
    env = {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws, "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(sdk_python(2)), str(Path(__file__).with_name("sdk") / "analytics_v2.py"),
                             json.dumps(arguments)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])["rows"]

    logs = client("logs", aws)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams] == [f"{name}/algo-1"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=streams[0][
        "logStreamName"], startFromHead=True)["events"]
    logged = [(e["timestamp"] // 60_000, float(LOSS.search(e["message"])[1])) for e in events
              if LOSS.search(e["message"])]
    assert len(logged) == 3  # the script's three epochs
    printed = [line for line in result.stdout.splitlines() if LOSS.search(line)]
    assert [float(LOSS.search(line)[1]) for line in printed] == [value for _, value in logged]

    minutes = sorted({minute for minute, _ in logged})
    expected = [sum(v for m, v in logged if m == minute) / sum(1 for m, _ in logged if m == minute)
                for minute in minutes]
    assert [row["metric_name"] for row in rows] == ["test_loss"] * len(minutes)
    assert [row["value"] for row in sorted(rows, key=lambda r: r["timestamp"])] == pytest.approx(expected)
    assert sorted(row["timestamp"] for row in rows) == [(m - minutes[0]) * 60.0 for m in minutes]
