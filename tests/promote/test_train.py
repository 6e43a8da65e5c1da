"""``dogops promote train``: the CreateTrainingJob request (botocore's model), the least-privilege training role,
and the whole command against an emulator that runs the job (seconds of training on generated data)."""

import argparse
import io
import json
import tarfile

import pytest
import yaml

from dogops.promote.config import load_stage
from dogops.promote.train import add_train_commands, settings, training_job_request
from dogops.promote.training_roles import NO_RESOURCE_LEVEL, cleanup, ensure_role, policy, role_name
from dogops.sagemaker_model import validate
from training.metrics import metric_definitions

from ..conftest import FAST
from .conftest import emulator_with_data

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "c" * 64
BUCKET = "dogops-train-test"
DATA, OUTPUT, CHECKPOINTS = f"s3://{BUCKET}/data", f"s3://{BUCKET}/dev/training", f"s3://{BUCKET}/dev/checkpoints"


def _request(**changes) -> dict:
    arguments = dict(name="dogops-dev-20260101-000000", stage=load_stage("dev"), image=IMAGE,
                     role_arn="arn:aws:iam::123456789012:role/dogops-dev-training", data=DATA, output=OUTPUT,
                     checkpoints=CHECKPOINTS, hyperparameters={"epochs": "3", "backbone": "resnet18"},
                     instance_type="ml.m5.xlarge", instances=2, spot=True, max_run_s=3600, max_wait_s=7200)
    arguments.update(changes)
    return training_job_request(**arguments)


def test_the_request_is_what_sagemaker_takes():
    request = _request()  # validated against botocore's model on the way
    assert request["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                                 "MetricDefinitions": metric_definitions()}
    assert request["HyperParameters"] == {"epochs": "3", "backbone": "resnet18"}
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == DATA
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"]["S3Uri"] == f"{CHECKPOINTS}/dogops-dev-20260101-000000"
    assert {t["Key"] for t in request["Tags"]} == {"project", "stage", "expires-at"}
    on_demand = _request(spot=False, instances=1)
    assert "EnableManagedSpotTraining" not in on_demand and "CheckpointConfig" not in on_demand
    assert on_demand["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


@pytest.mark.parametrize("changes, error", [
    ({"image": "dogops-training:dev"}, "by digest"),
    ({"max_wait_s": 60}, "at least max_run_s"),
    ({"instance_type": "ml.nonsense"}, "InstanceType"),
    ({"hyperparameters": {"epochs": 3}}, "HyperParameters.epochs"),
    ({"name": "under_score"}, "TrainingJobName"),
    ({"hyperparameters": {str(i): "1" for i in range(101)}}, "at most 100"),
])
def test_what_sagemaker_would_reject_is_refused_before_sending(changes, error):
    with pytest.raises(ValueError, match=error):
        _request(**changes)


def test_validation_uses_botocores_model():
    with pytest.raises(ValueError, match="Missing required parameter.*RoleArn"):
        validate({"TrainingJobName": "x", "AlgorithmSpecification": {"TrainingInputMode": "File"},
                  "OutputDataConfig": {"S3OutputPath": OUTPUT}, "StoppingCondition": {"MaxRuntimeInSeconds": 60},
                  "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1}},
                 "CreateTrainingJob")


def test_settings_merge_the_stage_over_the_project_and_check_hyperparameters(tmp_path):
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "hyperparameters": {"epochs": 5, "pretrained": True}}
    config["stages"]["prod"]["training"] = {"instance_type": "ml.c5.xlarge", "hyperparameters": {"epochs": 20}}
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    assert settings("dev", path)["hyperparameters"] == {"epochs": "5", "pretrained": "true"}
    prod = settings("prod", path)
    assert (prod["instance_type"], prod["hyperparameters"], prod["data"]) == ("ml.c5.xlarge", {"epochs": "20"}, DATA)
    config["training"]["hyperparameters"] = {"epoch": 5}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        settings("dev", path)


def test_the_default_settings_train_the_reference_model_on_what_the_local_stack_seeds():
    from services.stack import bootstrap
    from services.stack import settings as stack_settings

    dev, prod = settings("dev"), settings("prod")
    assert dev["data"] == prod["data"] == f"s3://{stack_settings.BUCKET}/{bootstrap.DATA_PREFIX}"
    assert dev["hyperparameters"] == bootstrap.HYPERPARAMETERS
    for stage, conf in (("dev", dev), ("prod", prod)):  # each stage writes under its own prefix
        assert conf["output"] == f"s3://{stack_settings.BUCKET}/{stage}/training"
        assert conf["checkpoints"] == f"s3://{stack_settings.BUCKET}/{stage}/checkpoints"


def test_the_role_allows_star_only_where_iam_has_no_resource_level_permission():
    document = policy("aws", "us-east-1", "123456789012", DATA, OUTPUT, CHECKPOINTS, IMAGE)
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow" and not any("*" in a for a in actions)
        if "*" in resources:
            assert set(actions) <= NO_RESOURCE_LEVEL, statement
        s3_objects = [r for r in resources if r.startswith("arn:aws:s3:::") and "/" in r]
        assert all(r.startswith(f"arn:aws:s3:::{BUCKET}/") and r.endswith("/*") and r.count("/") >= 2
                   for r in s3_objects), statement
    assert by_sid["ReadTheData"]["Resource"] == f"arn:aws:s3:::{BUCKET}/data/*"
    assert by_sid["WriteTheModel"] == {"Sid": "WriteTheModel", "Effect": "Allow", "Action": "s3:PutObject",
                                       "Resource": f"arn:aws:s3:::{BUCKET}/dev/training/*"}
    assert by_sid["ListTheData"]["Condition"] == {"StringLike": {"s3:prefix": ["data", "data/*"]}}
    assert by_sid["PullTheImage"]["Resource"] == \
        "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/training"
    assert by_sid["PublishTheMetricsNoResourceLevelPermission"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    assert all("log-group:/aws/sagemaker/TrainingJobs" in r for r in by_sid["WriteTheLogs"]["Resource"])


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator (it runs training jobs) with a small generated data set under s3://BUCKET/data; the conftest's
    ``session`` points boto3 at it."""
    yield from emulator_with_data(tmp_path_factory, "promote-train", BUCKET, DATA)


def test_the_role_is_created_tagged_and_updated_in_place(session):
    dev = load_stage("dev")
    arn, created = ensure_role(session, dev, DATA, OUTPUT, CHECKPOINTS, IMAGE)
    again, created_again = ensure_role(session, dev, DATA, f"s3://{BUCKET}/elsewhere", CHECKPOINTS, IMAGE)
    assert created and not created_again and arn == again and arn.endswith(":role/dogops-dev-training")
    iam = session.client("iam")
    role = iam.get_role(RoleName=role_name(dev))["Role"]
    assert {t["Key"] for t in role["Tags"]} == {"project", "stage", "expires-at"}
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    (name,) = iam.list_role_policies(RoleName=role_name(dev))["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name(dev), PolicyName=name)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    model = next(s for s in document["Statement"] if s["Sid"] == "WriteTheModel")
    assert model["Resource"] == f"arn:aws:s3:::{BUCKET}/elsewhere/*"
    assert cleanup(dev, session) == ["IAM role dogops-dev-training"]  # for `dogops destroy`
    assert cleanup(dev, session) == []


def test_promote_train_runs_the_job_reports_and_records_the_candidate(session, tmp_path):
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS,
                          "hyperparameters": {**FAST, "epochs": "3", "batch_size": "16"}}
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers())
    candidate = tmp_path / ".dogops" / "candidate.json"
    args = parser.parse_args(["train", "--stage", "dev", "--config", str(path), "--image", IMAGE, "--spot",
                              "--name", "dogops-dev-cli", "--poll", "0.5", "--candidate", str(candidate)])
    lines = []
    record = args.func(args, echo=lines.append)
    text = "\n".join(lines)
    for expected in ("status: InProgress", "  Downloading: ", "  Training: ", "  Uploading: ", "status: Completed",
                     "[algo-1-", "epoch=3 ", "managed spot saving", "final metrics: ", "billable"):
        assert expected in text, expected
    assert record["model_data_url"] == f"{OUTPUT}/dogops-dev-cli/output/model.tar.gz"
    assert json.loads(candidate.read_text()) == record
    assert (candidate.parent / "candidates" / "dogops-dev-cli.json").exists()
    assert record["spot"] and record["billable_seconds"] >= 1 and record["image"] == IMAGE
    bucket, key = record["model_data_url"][5:].split("/", 1)
    body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        metrics = json.load(tar.extractfile("metrics.json"))
    assert metrics["hyperparameters"]["epochs"] == "3"
    assert metrics["test_accuracy"] == pytest.approx(record["metrics"]["test_accuracy"], abs=1e-6)
    job = session.client("sagemaker").describe_training_job(TrainingJobName="dogops-dev-cli")
    assert job["RoleArn"].endswith(":role/dogops-dev-training") and job["CheckpointConfig"]["S3Uri"] == \
        f"{CHECKPOINTS}/dogops-dev-cli"
