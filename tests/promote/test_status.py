"""``dogops status --aws`` and ``dogops destroy --images`` against a real emulator subprocess: what runs, its cost
per hour, the expired reported and deleted with ``--enforce-ttl``, the pushed repositories deleted on request."""

import json

import pytest
import yaml

from dogops.promote.config import CONFIG, load_stage
from dogops.promote.push import repository_uri
from dogops.promote.stack import apply, plan
from services.stack import settings

from ..conftest import run_script, script_env
from ..services.processes import client
from .conftest import BUCKET, IMAGE


@pytest.fixture
def expired_config(tmp_path):
    """promote.yaml with dev's time to live in the past: its stack is expired from the start."""
    config = yaml.safe_load(CONFIG.read_text())
    config["stages"]["dev"]["ttl_hours"] = -1
    path = tmp_path / "promote.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _dogops(aws, *args):
    env = script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": aws})
    return run_script("dogops", *args, env=env, timeout=300, check=True).stdout


def test_status_lists_the_stage_with_its_cost_and_enforce_ttl_deletes_the_expired(aws, session, expired_config):
    dev = load_stage("dev", expired_config)
    assert apply(plan(dev, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session), session, lambda _: None) \
        == "CREATE_COMPLETE"
    repository_uri(session.client("ecr"), "dogops-dev/serving", dev)  # as `dogops promote push` leaves it
    _loose_endpoint(aws, "dogops-scratch", "2020-01-01T00:00Z")

    listed = _dogops(aws, "status", "--aws", "--config", expired_config)
    rows = {(line.split()[2], line.split()[3]): line for line in listed.splitlines() if line.startswith("dev ")}
    endpoint, function = rows["endpoint", "dogops-dev"], rows["function", "dogops-dev-predict"]
    assert "EXPIRED" in endpoint and "0.1150" in endpoint and "1 x ml.m5.large" in endpoint
    assert "1 provisioned x 256 MB" in function and "0.0038" in function
    assert "EXPIRED" in rows["stack", "dogops-dev"] and ("repository", "dogops-dev/serving") in rows
    assert "/aws/lambda/dogops-dev-predict" in listed and "0.0560" in listed  # a log group; the loose endpoint
    assert "total: $0.1748/hour" in listed  # ml.m5.large + 256 MB provisioned + ml.t2.medium; prod not deployed
    assert "EXPIRED: endpoint dogops-dev (stage dev)" in listed and "EXPIRED: endpoint dogops-scratch" in listed
    answer = json.loads(_dogops(aws, "status", "--aws", "--json", "--config", expired_config))  # the same, as data
    resources = {(r["type"], r["name"]): r for r in answer["resources"]}
    assert resources["sagemaker endpoint", "dogops-dev"] == {
        "stage": "dev", "type": "sagemaker endpoint", "name": "dogops-dev", "stack": "dogops-dev", "expired": True,
        "arn": resources["sagemaker endpoint", "dogops-dev"]["arn"], "usd_per_hour": pytest.approx(0.115),
        "expires_at": resources["sagemaker endpoint", "dogops-dev"]["expires_at"], "note": "InService, 1 x ml.m5.large"}
    assert resources["sagemaker endpoint", "dogops-scratch"]["stack"] is None
    assert answer["usd_per_hour"] == pytest.approx(0.1748, abs=5e-5) and answer["deleted"] == []
    assert [(t["where"], t["account"], t["region"]) for t in answer["targets"]] == [("local", "123456789012",
                                                                                      "us-east-1")]

    enforced = _dogops(aws, "status", "--aws", "--enforce-ttl", "--config", expired_config)
    assert "stage dev expired at" in enforced and "deleting stack dogops-dev" in enforced
    assert "endpoint dogops-scratch expired at 2020-01-01T00:00Z and no stage stack owns it: deleting it" in enforced
    assert "but the image repositories dogops-dev/serving (" in enforced  # kept: destroy without --images
    cfn = client("cloudformation", aws)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert client("sagemaker", aws).list_endpoints()["Endpoints"] == []

    again = _dogops(aws, "status", "--aws", "--config", expired_config)
    assert "EXPIRED" not in again and "total: $0.0000/hour" in again

    destroyed = _dogops(aws, "destroy", "--stage", "dev", "--images", "--config", expired_config)
    assert "repository dogops-dev/serving: deleted with its images" in destroyed
    assert "nothing tagged project=dogops stage=dev remains" in destroyed
    assert client("ecr", aws).describe_repositories()["repositories"] == []


def test_status_without_aws_credentials_is_refused_against_a_remote_endpoint():
    result = run_script("dogops", "status", "--aws", env=script_env(AWS_ENDPOINT_URL="https://example.com"))
    assert result.returncode != 0 and "neither a local endpoint" in result.stderr


def _loose_endpoint(aws: str, name: str, expires_at: str) -> None:
    """An endpoint made outside any stack, tagged as the project's, expired."""
    sagemaker, iam = client("sagemaker", aws), client("iam", aws)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument='{"Statement": []}')["Role"]["Arn"]
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/one/model.tar.gz"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.t2.medium"}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=[
        {"Key": "project", "Value": "dogops"}, {"Key": "stage", "Value": "scratch"},
        {"Key": "expires-at", "Value": expires_at}])
