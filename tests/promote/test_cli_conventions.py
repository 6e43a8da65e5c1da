"""The command line's conventions, run as typed against a real emulator subprocess: ``--json`` (one document on
stdout, the rest on stderr, exit codes kept), the target (account, region, caller) printed on stderr before anything
is changed and named in apply's prompt, and local-or-AWS decided from each client's resolved endpoint."""

import contextlib
import hashlib
import io
import json

import pytest

from dogops.cli import main
from dogops.target import AWS, LOCAL, Session, check, place
from services.stack import settings

from ..conftest import free_port, run_script, script_env
from ..services.processes import client
from .conftest import BUCKET, IMAGE

ACCOUNT = "123456789012"  # the emulator's account, and the caller its root key is
IDENTITY = f"arn:aws:sts::{ACCOUNT}:user/moto"


def _env(**endpoints) -> dict:
    """The environment of a shell with the emulator's credentials and only these ``AWS_ENDPOINT_URL*``."""
    env = {k: v for k, v in script_env(**settings.emulator_env()).items() if not k.startswith("AWS_ENDPOINT_URL")}
    return {**env, **endpoints}


def _stacks(aws: str) -> list[str]:
    return [s["StackName"] for s in client("cloudformation", aws).list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE"]


def test_plan_json_is_one_document_on_stdout_and_the_rest_on_stderr(aws):
    result = run_script("dogops", "promote", "plan", "--stage", "prod", "--image", IMAGE, "--model-data-url",
                        f"s3://{BUCKET}/one/model.tar.gz", "--json", env=_env(AWS_ENDPOINT_URL=aws), check=True)
    plan = json.loads(result.stdout)
    assert plan["target"] == {"where": "local", "account": ACCOUNT, "region": "us-east-1", "identity": IDENTITY,
                              "endpoints": plan["target"]["endpoints"]}
    assert set(plan["target"]["endpoints"].values()) == {aws}
    assert (plan["stage"], plan["stack"], plan["image"], plan["change_set_type"]) == \
        ("prod", "dogops-prod", IMAGE, "CREATE")
    assert plan["model_data_url"].startswith(f"s3://{BUCKET}/dogops/models/")
    changes = {c["logical_id"]: c for c in plan["changes"]}
    assert changes["Endpoint"] == {"action": "Add", "logical_id": "Endpoint", "resource_type":
                                   "AWS::SageMaker::Endpoint", "physical_id": None, "replacement": None}
    assert plan["cost"]["per_hour"]["endpoint_min"] == pytest.approx(0.23)
    expiry = plan["expiry_stack"]  # the roles apply creates before the stage's stack are in the plan too
    assert (expiry["stack"], expiry["change_set_type"]) == ("dogops-prod-expiry", "CREATE")
    assert {(c["logical_id"], c["resource_type"]) for c in expiry["changes"]} >= {
        ("ExpiryScheduleRole", "AWS::IAM::Role"), ("StackDeleterRole", "AWS::IAM::Role")}
    assert result.stderr.startswith(f"target: the local stack ({aws.removeprefix('http://')}), account {ACCOUNT}, "
                                    f"region us-east-1, as {IDENTITY}\n")
    assert "stack dogops-prod (new)" in result.stderr and "cost estimate" in result.stderr
    assert "stack dogops-prod-expiry (new)" in result.stderr
    assert _stacks(aws) == []  # a plan deploys nothing


def test_status_json_answers_each_service_and_keeps_exit_1_when_one_is_down(aws, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    env = _env(DOGOPS_STATE_DIR=str(tmp_path), DOGOPS_EMULATOR_URL=aws, DOGOPS_GATEWAY_URL=down,
               DOGOPS_SERVING_URL=down)
    result = run_script("dogops", "status", "--json", env=env)
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert status["native_stack"] is None and status["healthy"] is False
    assert {s["name"]: (s["healthy"], s["pid"], s["url"]) for s in status["services"]} == {
        "emulator": (True, None, f"{aws}/_dogops/health"), "gateway": (False, None, f"{down}/_dogops/health"),
        "serving": (False, None, f"{down}/ping")}
    assert "UNHEALTHY" in result.stderr


class Terminal(io.StringIO):
    """Standard input as a terminal where the user has typed the given lines."""

    def isatty(self) -> bool:
        return True


def test_apply_names_the_target_before_it_asks_and_answering_no_changes_nothing(aws, session, monkeypatch):
    """What a terminal shows (stdout and stderr as they come) when the user answers n."""
    from dogops.promote import cli

    monkeypatch.setattr(cli, "_preflight", lambda *args, **kwargs: None)  # no container: only the prompt matters
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
        with pytest.raises(SystemExit, match="not applied"):
            main(["promote", "apply", "--stage", "dev", "--image", IMAGE, "--model-data-url",
                  f"s3://{BUCKET}/one/model.tar.gz"])
    screen = shown.getvalue()
    target = f"the local stack ({aws.removeprefix('http://')}), account {ACCOUNT}, region us-east-1, as {IDENTITY}"
    assert screen.startswith(f"target: {target}\n")
    assert screen.rstrip().endswith(f"apply these changes to {target}? [y/N]")
    assert "stack dogops-dev (new)" in screen and _stacks(aws) == []


def test_destroy_and_status_name_the_target_first(aws):
    for command in (["destroy", "--stage", "dev"], ["status", "--aws"]):
        result = run_script("dogops", *command, env=_env(AWS_ENDPOINT_URL=aws), check=True)
        assert result.stderr.startswith(f"target: the local stack ({aws.removeprefix('http://')}), account "), command
        assert "target:" not in result.stdout


def test_clients_that_disagree_are_refused_before_any_call(aws, tmp_path):
    """One service pointed at the local stack (by the environment, or by ~/.aws/config) and the others left to
    AWS: refused, naming both sides, before any call (no target printed, the model not pinned)."""
    model = b"mixed" * 300
    client("s3", aws).put_object(Bucket=BUCKET, Key="mixed/model.tar.gz", Body=model)
    config = tmp_path / "config"
    config.write_text(f"[default]\nservices = local-sagemaker\n\n[services local-sagemaker]\nsagemaker =\n"
                      f"  endpoint_url = {aws}\n")
    plan = ["promote", "plan", "--stage", "dev", "--image", IMAGE, "--model-data-url",
            f"s3://{BUCKET}/mixed/model.tar.gz"]
    for env in (_env(AWS_ENDPOINT_URL_SAGEMAKER=aws), _env(AWS_CONFIG_FILE=str(config))):
        for command in (plan, ["status", "--aws"], ["destroy", "--stage", "dev"]):
            result = run_script("dogops", *command, env=env)
            assert result.returncode == 1 and "target:" not in result.stderr, (command, result.stderr)
            assert "this command's AWS clients disagree, so it stops before any call: AWS: " in result.stderr
            assert f"the local stack: {aws} (sagemaker)" in result.stderr and "https://s3.amazonaws.com (s3)" in \
                result.stderr
    pinned = f"dogops/models/{hashlib.sha256(model).hexdigest()}/"
    assert client("s3", aws).list_objects_v2(Bucket=BUCKET, Prefix=pinned)["KeyCount"] == 0


def test_an_endpoint_in_the_config_file_is_the_local_stack_as_much_as_one_in_the_environment(aws, tmp_path):
    config = tmp_path / "config"
    config.write_text(f"[default]\nendpoint_url = {aws}\n")
    result = run_script("dogops", "status", "--aws", "--json", env=_env(AWS_CONFIG_FILE=str(config)), check=True)
    assert [t["where"] for t in json.loads(result.stdout)["targets"]] == ["local"]


def test_aws_or_not_must_match_where_the_endpoints_resolve(aws):
    result = run_script("dogops", "destroy", "--stage", "dev", "--aws", env=_env(AWS_ENDPOINT_URL=aws))
    assert result.returncode == 1 and "--aws, but every endpoint resolves to the local stack" in result.stderr
    result = run_script("dogops", "destroy", "--stage", "dev", env=_env())
    assert result.returncode == 1 and "every endpoint resolves to AWS: pass --aws" in result.stderr


def test_the_place_of_an_endpoint():
    for local in ("http://127.0.0.1:5000", "http://localhost:4566", "http://emulator:5000", "http://[::1]:5000"):
        assert place(local) == LOCAL, local
    for aws in ("https://s3.amazonaws.com", "https://api.sagemaker.eu-west-1.amazonaws.com",
                "https://lambda.us-east-1.api.aws", "https://s3.cn-north-1.amazonaws.com.cn"):
        assert place(aws) == AWS, aws
    for neither in ("https://example.com", "http://10.0.0.5:5000", "https://amazonaws.com.example.com", None):
        assert place(neither) is None, neither
    assert check({"s3": "http://127.0.0.1:5000", "sts": "http://emulator:5000"}, False) == LOCAL
    with pytest.raises(SystemExit, match="neither a local endpoint"):
        check({"s3": "http://127.0.0.1:5000", "sts": "https://example.com"}, None)


def test_a_client_made_later_must_reach_the_same_place(aws, session):
    from dogops.target import connect

    checked = connect("us-east-1", False, echo=lambda line: None)
    assert isinstance(checked, Session) and checked.target.where == LOCAL
    assert checked.client("s3").list_buckets()["Buckets"]
    with pytest.raises(SystemExit, match="s3 resolves to https://s3.amazonaws.com .AWS., but this command reaches "
                                         "the local stack"):
        checked.client("s3", endpoint_url="https://s3.amazonaws.com")
