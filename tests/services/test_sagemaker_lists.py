"""SageMaker's list actions page as AWS's do (10 by default, ``NextToken``; ``services.emulator.sagemaker_lists``), so a
client without a paginator misses items locally exactly as it would on AWS; ``dogops promote tune`` pages through
all of a tuning job's trials (reported by a host runner through the emulator's own ``DogopsReportJob``). Real boto3."""

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


def test_endpoints_models_and_training_jobs_list_ten_at_a_time_as_on_aws(session):
    sm = session.client("sagemaker")
    for i in range(12):
        sm.create_model(ModelName=f"m{i:02d}", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                        PrimaryContainer={"Image": IMAGE})
        sm.create_endpoint_config(EndpointConfigName=f"c{i:02d}", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": f"m{i:02d}", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName=f"e{i:02d}", EndpointConfigName=f"c{i:02d}")
        sm.create_training_job(  # left to a host runner that never comes: they only need to exist
            TrainingJobName=f"t{i:02d}", RoleArn="arn:aws:iam::123456789012:role/r",
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": "s3://b/out"}, StoppingCondition={"MaxRuntimeInSeconds": 60},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1})
    for operation, key in (("list_models", "Models"), ("list_endpoint_configs", "EndpointConfigs"),
                           ("list_endpoints", "Endpoints"), ("list_training_jobs", "TrainingJobSummaries")):
        first = getattr(sm, operation)()
        assert len(first[key]) == 10 and first["NextToken"], operation
        assert sum(len(p[key]) for p in sm.get_paginator(operation).paginate()) == 12, operation
    newest = sm.list_models(MaxResults=1)["Models"][0]["ModelName"]
    assert newest == "m11"  # newest first, as AWS lists models
    for operation, key in (("list_models", "Models"), ("list_endpoint_configs", "EndpointConfigs"),
                           ("list_endpoints", "Endpoints")):
        assert len(getattr(sm, operation)(NameContains="11")[key]) == 1, operation
    assert [m["ModelName"] for m in sm.list_models(NameContains="m1")["Models"]] == ["m11", "m10"]
