"""``dogops promote train``: the CreateTrainingJob request (botocore's model), the least-privilege training role
(the training stack's template, rendered for the stage, and that stack on the emulator), and the whole command
against an emulator that runs the job (seconds of training on generated data)."""

import io
import json
import tarfile

import pytest
import yaml

from dogops.cli import main
from dogops.promote import training_stack
from dogops.promote.config import load_stage
from dogops.promote.preflight import load_template, policy_documents
from dogops.promote.runs import Locations, settings
from dogops.promote.stack import delete_stack
from dogops.promote.train import training_job_request
from dogops.sagemaker_model import validate
from training.metrics import metric_definitions

from ..conftest import FAST
from .conftest import emulator_with_data, role_statements

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "c" * 64
BUCKET = "dogops-train-test"
DATA, OUTPUT, CHECKPOINTS = f"s3://{BUCKET}/data", f"s3://{BUCKET}/dev/training", f"s3://{BUCKET}/dev/checkpoints"
WHERE = Locations(DATA, OUTPUT, CHECKPOINTS)
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}  # IAM takes only "*" for these


def training_jobs_policy(where: Locations = WHERE, image: str = IMAGE) -> dict:
    """The training jobs' role's statements as the training stack's template makes them for dev: its own inline
    policy and the one it shares with the EC2 role, in one document."""
    dev = load_stage("dev")
    params = training_stack.parameters(dev, where, image, "123456789012", 30, dev.expires_at())
    documents = policy_documents(load_template(training_stack.TEMPLATE.read_text()), params, "us-east-1")
    assert set(documents) == {"DataModelImagePolicy", "TrainingJobsRole/training-logs-metrics"}  # no EC2 role yet
    return {"Version": "2012-10-17", "Statement": [s for d in documents.values() for s in d["Statement"]]}


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
    document = training_jobs_policy()
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
    assert len(by_sid) == 9


def test_a_whole_bucket_and_a_local_registry_s_image_are_named_as_such():
    whole = {s["Sid"]: s for s in training_jobs_policy(
        Locations(f"s3://{BUCKET}", OUTPUT, CHECKPOINTS), "127.0.0.1:5001/dogops-dev/training@sha256:" + "c" * 64
    )["Statement"]}
    assert whole["ReadTheData"]["Resource"] == f"arn:aws:s3:::{BUCKET}/*"
    assert whole["ListTheData"]["Condition"] == {"StringLike": {"s3:prefix": ["*"]}}
    assert whole["PullTheImage"]["Resource"] == "arn:aws:ecr:us-east-1:123456789012:repository/dogops-dev/training"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator (it runs training jobs) with a small generated data set under s3://BUCKET/data; the conftest's
    ``session`` points boto3 at it."""
    yield from emulator_with_data(tmp_path_factory, "promote-train", BUCKET, DATA)


def test_the_role_is_made_by_the_training_stack_tagged_and_updated_in_place(session):
    dev, lines = load_stage("dev"), []
    made = training_stack.ensure(session, dev, WHERE, IMAGE, 30, lines.append)
    arn = made.outputs["TrainingJobsRoleArn"]
    assert made.iam_changed and arn.endswith(":role/dogops-dev-training")
    assert "stack dogops-dev-training (new)" in lines[0] and "  create               TrainingJobsRole " in lines[0]
    echoed = len(lines)
    again = training_stack.ensure(session, dev, WHERE, IMAGE, 30, lines.append)
    assert (again.outputs, again.iam_changed, len(lines)) == (made.outputs, False, echoed)  # no change: silent
    moved = training_stack.ensure(session, dev, Locations(DATA, f"s3://{BUCKET}/elsewhere", CHECKPOINTS), IMAGE, 30,
                                  lines.append)
    assert moved.iam_changed and moved.outputs["TrainingJobsRoleArn"] == arn
    assert "modify               DataModelImagePolicy " in "\n".join(lines)
    iam = session.client("iam")
    role = iam.get_role(RoleName="dogops-dev-training")["Role"]
    assert {t["Key"] for t in role["Tags"]} == {"project", "stage", "expires-at"}
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = role_statements(iam, "dogops-dev-training")
    assert statements == {s["Sid"]: s for s in training_jobs_policy(
        Locations(DATA, f"s3://{BUCKET}/elsewhere", CHECKPOINTS))["Statement"]}  # as the template renders them
    assert statements["WriteTheModel"]["Resource"] == f"arn:aws:s3:::{BUCKET}/elsewhere/*"
    delete_stack(session, "dogops-dev-training", lines.append)  # as `dogops destroy` does
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == "dogops-dev-training"]


def test_promote_train_runs_the_job_reports_and_records_the_candidate(session, tmp_path, capfd):
    """The command as typed, with --json: the record on stdout as one document, the progress on stderr."""
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS,
                          "hyperparameters": {**FAST, "epochs": "3", "batch_size": "16"}}
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    candidate = tmp_path / ".dogops" / "candidate.json"
    assert main(["promote", "train", "--stage", "dev", "--config", str(path), "--image", IMAGE, "--spot", "--name",
                 "dogops-dev-cli", "--poll", "0.5", "--candidate", str(candidate), "--json"]) == 0
    out, text = capfd.readouterr()
    record = json.loads(out)
    assert text.startswith("target: the local stack (127.0.0.1:") and ", account 123456789012, region us-east-1" in text
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
    assert "stack dogops-dev-training (new)" in text and "CREATE_COMPLETE" in text  # the role's stack, applied first
