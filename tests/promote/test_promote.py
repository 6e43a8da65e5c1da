"""Promotion against a real emulator subprocess: plan, apply, no-op, a new model, destroy; the model pinned; the
guard; the prices."""

import hashlib

import pytest
import requests

from dogops.promote.config import load_stage
from dogops.promote.destroy import destroy
from dogops.promote.prices import estimate, load_prices
from dogops.promote.stack import apply, discard, format_plan, plan
from services.security.sigv4 import RootAuth
from services.stack import settings

from ..conftest import run_script, script_env
from ..services.processes import client
from .conftest import BUCKET, IMAGE


def test_plan_apply_noop_new_model_destroy(aws, session):
    dev = load_stage("dev")
    first = plan(dev, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session)
    text = format_plan(dev, first)
    assert first.change_set_type == "CREATE" and {c["Action"] for c in first.changes} == {"Add"}
    for logical_id in ("Model", "EndpointConfig", "Endpoint", "ScalableTarget", "Function", "FunctionAlias",
                       "FunctionUrl", "UrlInvokePermission"):
        assert f"create               {logical_id} " in text
    assert "total at max capacity" in text and "/month" in text
    discard(first, session)  # a plan alone leaves nothing behind
    cfn = client("cloudformation", aws)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]

    events = []
    assert apply(plan(dev, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session), session, events.append) \
        == "CREATE_COMPLETE"
    assert events and cfn.describe_stacks(StackName="dogops-dev")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    endpoints = client("sagemaker", aws).list_endpoints()["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in endpoints] == [("dogops-dev", "InService")]
    lam = client("lambda", aws)
    function = lam.get_function(FunctionName="dogops-dev-predict")
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 2
    assert lam.get_alias(FunctionName="dogops-dev-predict", Name="live")["FunctionVersion"] != "$LATEST"
    _assert_role_may_invoke_only_its_endpoint(aws, function["Configuration"]["Role"])
    scaling = client("application-autoscaling", aws)  # registered, so the emulator's auto-scaling acts on them
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        ("endpoint/dogops-dev/variant/AllTraffic", dev.min_capacity, dev.max_capacity)]
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == dev.target_invocations

    again = plan(dev, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session)
    assert again.change_set is None and "no changes" in format_plan(dev, again)
    assert apply(again, session, events.append) == "NO_CHANGES"

    retrained = plan(dev, IMAGE, f"s3://{BUCKET}/two/model.tar.gz", session)
    changed = {c["LogicalResourceId"]: c["Action"] for c in retrained.changes}
    assert changed["Model"] == changed["EndpointConfig"] == "Modify" and "Function" not in changed
    sagemaker = client("sagemaker", aws)
    before = sagemaker.describe_endpoint(EndpointName="dogops-dev")["EndpointConfigName"]
    assert apply(retrained, session, events.append) == "UPDATE_COMPLETE"
    config = sagemaker.describe_endpoint(EndpointName="dogops-dev")["EndpointConfigName"]
    assert config != before  # rolled through a new EndpointConfig
    model = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]
    assert sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"].endswith("two/model.tar.gz")

    destroy(dev, session, events.append)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert client("sagemaker", aws).list_endpoints()["Endpoints"] == []
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


def _assert_role_may_invoke_only_its_endpoint(aws: str, role: str) -> None:
    """The role the stack made is evaluated by the emulator's IAM as written (its inline policy, as JSON)."""
    creds = client("sts", aws).assume_role(RoleArn=role, RoleSessionName="check")["Credentials"]
    decisions = {}
    for endpoint in ("dogops-dev", "dogops"):
        answer = requests.post(f"{aws}/_dogops/iam/authorize", timeout=10, auth=RootAuth(), json={
            "access_key_id": creds["AccessKeyId"], "session_token": creds["SessionToken"],
            "action": "sagemaker:InvokeEndpoint", "resource": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}"})
        assert answer.status_code == 200, answer.text
        decisions[endpoint] = answer.json()["allowed"]
    assert decisions == {"dogops-dev": True, "dogops": False}


def test_apply_deploys_the_bytes_preflight_checked_though_the_object_is_replaced(aws, session, monkeypatch, capsys):
    """A writer replaces --model-data-url's object between preflight and apply: the stack serves the checked bytes,
    from a copy named by their sha256 (SageMaker re-reads ModelDataUrl whenever it starts an instance)."""
    from dogops.cli import build_parser
    from dogops.promote import cli

    s3, url = client("s3", aws), f"s3://{BUCKET}/swap/model.tar.gz"
    checked, replaced = b"checked" * 200, b"replaced" * 200
    s3.put_object(Bucket=BUCKET, Key="swap/model.tar.gz", Body=checked)

    def preflight(stage, session, image, model_data_url, model_tar):
        assert model_data_url == url and model_tar.read_bytes() == checked
        s3.put_object(Bucket=BUCKET, Key="swap/model.tar.gz", Body=replaced)

    monkeypatch.setattr(cli, "_preflight", preflight)
    monkeypatch.setattr(cli, "_host_locally", lambda stage, session: None)  # no container: only the stack matters
    args = build_parser().parse_args(["promote", "apply", "--stage", "prod", "--image", IMAGE, "--model-data-url",
                                      url, "--yes"])
    args.func(args)
    pinned = f"s3://{BUCKET}/dogops/models/{hashlib.sha256(checked).hexdigest()}/model.tar.gz"
    assert f"pinned as {pinned}" in capsys.readouterr().out
    sagemaker = client("sagemaker", aws)
    config = sagemaker.describe_endpoint(EndpointName="dogops-prod")["EndpointConfigName"]
    model = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]
    deployed = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["ModelDataUrl"]
    assert deployed == pinned
    bucket, _, key = deployed.removeprefix("s3://").partition("/")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == checked
    destroy(load_stage("prod"), session, lambda line: None)


def test_cli_plan_prints_changes_and_cost(aws):
    env = script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": aws})
    result = run_script("dogops", "promote", "plan", "--stage", "prod", "--image", IMAGE,
                        "--model-data-url", f"s3://{BUCKET}/one/model.tar.gz", env=env, check=True)
    assert "stack dogops-prod (new)" in result.stdout and "2 x ml.m5.large (min)" in result.stdout


def test_guard_refuses_a_remote_endpoint_without_aws():
    """(Where an endpoint goes, and clients that disagree: test_cli_conventions.)"""
    result = run_script("dogops", "destroy", "--stage", "dev",
                        env=script_env(AWS_ENDPOINT_URL="https://example.com"))
    assert result.returncode != 0 and "https://example.com (" in result.stderr
    assert "neither a local endpoint (loopback, localhost, a compose service) nor AWS" in result.stderr


def test_prices_for_dev_and_prod():
    table = load_prices()
    assert table["as_of"] and table["sources"]
    dev, prod = estimate(load_stage("dev"), 2**30, table)["per_hour"], estimate(load_stage("prod"), 0, table)["per_hour"]
    assert dev["endpoint_min"] == pytest.approx(0.115) and dev["endpoint_max"] == pytest.approx(0.23)
    assert prod["endpoint_min"] == pytest.approx(0.23) and prod["endpoint_max"] == pytest.approx(0.345)
    assert dev["provisioned_concurrency"] == pytest.approx(0.25 * 3600 * 0.0000041667)
    assert prod["provisioned_concurrency"] == pytest.approx(2 * dev["provisioned_concurrency"])
    assert dev["storage"] == pytest.approx(0.023 / 730) and prod["storage"] == 0


@pytest.mark.parametrize("template", ["template.yaml", "training.yaml"])
def test_template_passes_cfn_lint(template):
    result = run_script("cfn-lint", f"dogops/promote/{template}")
    assert result.returncode == 0, result.stdout
