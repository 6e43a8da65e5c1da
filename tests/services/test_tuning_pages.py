"""``ListTrainingJobsForHyperParameterTuningJob`` pages as SageMaker's does (10 by default, ``NextToken``), so a
client without a paginator loses trials locally exactly as it would on AWS; ``dogops promote tune`` pages through
all of them. The trials are reported by a host runner (the emulator's own ``DogopsReportJob``), with real boto3."""

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from dogops.promote.config import load_stage
from dogops.promote.tune import tune_request, wait
from dogops.tuning.spec import parse_spec
from services.jobs.training import claim, remote_report
from services.stack import settings

from .processes import emulator

TRIALS = 12
SPEC = {"Strategy": "Random", "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": TRIALS, "MaxParallelTrainingJobs": 2},
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]}}
IMAGE = "127.0.0.1:5001/dogops-training@sha256:" + "0" * 64
CONF = {"data": "s3://b/data", "output": "s3://b/out", "checkpoints": "s3://b/ckpt", "hyperparameters": {},
        "instance_type": "ml.m5.large", "max_run_s": 3600, "volume_gb": 30}


@pytest.fixture
def session(tmp_path, monkeypatch):
    server = emulator(tmp_path, DOGOPS_TRAINING_RUNNER="host")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    yield boto3.Session(aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                        region_name=settings.REGION)
    server.stop()


def test_trials_come_ten_to_a_page_and_the_paginator_and_promote_tune_see_all(session):
    sm = session.client("sagemaker")
    name = "paged"
    sm.create_hyper_parameter_tuning_job(**tune_request(
        parse_spec(SPEC), name, load_stage("dev"), IMAGE, "arn:aws:iam::123456789012:role/r", CONF))
    assert claim(session, "HyperParameterTuningJob", name)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trials = [{"TrainingJobName": f"{name}-{i:03d}", "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:"
               f"training-job/{name}-{i:03d}", "CreationTime": start + timedelta(seconds=i),
               "TrainingJobStatus": "Completed", "TunedHyperParameters": {"learning_rate": "0.005"}}
              for i in range(TRIALS)]
    remote_report(session, "HyperParameterTuningJob", name)("Completed", trials=trials)

    first = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name,
                                                                SortBy="CreationTime")
    assert len(first["TrainingJobSummaries"]) == 10 and first["NextToken"]
    pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=name, SortBy="CreationTime", PaginationConfig={"PageSize": 5})
    assert [t["TrainingJobName"] for p in pages for t in p["TrainingJobSummaries"]] == [
        t["TrainingJobName"] for t in trials]
    with pytest.raises(ClientError, match="token"):
        sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, NextToken="x")

    lines = []
    wait(session, name, echo=lines.append, poll_s=0)
    assert sum(line.startswith("  trial ") for line in lines) == TRIALS
