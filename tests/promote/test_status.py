"""``dogops status --aws`` and ``dogops destroy --images`` against a real emulator subprocess: what runs, its cost
per hour, the expired reported and deleted with ``--enforce-ttl``, the pushed repositories deleted on request."""

import dataclasses
import json
import os
import subprocess

import pytest

from dogops.promote.config import CONFIG, load_stage
from dogops.promote.push import repository_uri
from dogops.promote.stack import apply, plan
from services.stack import settings

from ..conftest import BIN, run_script, script_env
from ..services.processes import client
from .conftest import BUCKET, IMAGE


def _env(aws):
    return script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": aws})


def _dogops(aws, *args):
    return run_script("dogops", *args, "--config", CONFIG.resolve(), env=_env(aws), timeout=300, check=True).stdout


def _on_a_terminal(aws, answer: str, *args) -> subprocess.CompletedProcess:
    """``dogops ARGS`` with a terminal as stdin, which answers ``answer``."""
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen([str(BIN / "dogops"), *map(str, args), "--config", str(CONFIG.resolve())],
                                stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(aws), text=True)
        os.write(controller, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=300)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_status_lists_the_stage_with_its_cost_and_enforce_ttl_deletes_the_expired(aws, session):
    # made expired (its schedule's time already past when made: the emulator, like dogops, never runs such a one),
    # as a stack whose schedule failed or was removed would be: `--enforce-ttl` is the backstop
    dev = dataclasses.replace(load_stage("dev"), ttl_hours=-1)
    assert apply(plan(dev, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session), session, lambda _: None) \
        == "CREATE_COMPLETE"
    repository_uri(session.client("ecr"), "dogops-dev/serving", dev)  # as `dogops promote push` leaves it
    _loose_endpoint(aws, "dogops-scratch", "2020-01-01T00:00Z")

    listed = _dogops(aws, "status", "--aws")
    rows = {(line.split()[2], line.split()[3]): line for line in listed.splitlines() if line.startswith("dev ")}
    endpoint, function = rows["endpoint", "dogops-dev"], rows["function", "dogops-dev-predict"]
    assert "EXPIRED" in endpoint and "0.1150" in endpoint and "1 x ml.m5.large" in endpoint
    assert "1 provisioned x 256 MB" in function and "0.0038" in function
    assert "EXPIRED" in rows["stack", "dogops-dev"] and ("repository", "dogops-dev/serving") in rows
    assert "/aws/lambda/dogops-dev-predict" in listed and "0.0560" in listed  # a log group; the loose endpoint
    assert "total: $0.1748/hour" in listed  # ml.m5.large + 256 MB provisioned + ml.t2.medium; prod not deployed
    assert "EXPIRED: endpoint dogops-dev (stage dev)" in listed and "EXPIRED: endpoint dogops-scratch" in listed
    answer = json.loads(_dogops(aws, "status", "--aws", "--json"))  # the same, as data
    resources = {(r["type"], r["name"]): r for r in answer["resources"]}
    assert resources["sagemaker endpoint", "dogops-dev"] == {
        "stage": "dev", "type": "sagemaker endpoint", "name": "dogops-dev", "stack": "dogops-dev", "expired": True,
        "arn": resources["sagemaker endpoint", "dogops-dev"]["arn"], "usd_per_hour": pytest.approx(0.115),
        "expires_at": resources["sagemaker endpoint", "dogops-dev"]["expires_at"], "note": "InService, 1 x ml.m5.large"}
    assert resources["sagemaker endpoint", "dogops-scratch"]["stack"] is None
    assert answer["usd_per_hour"] == pytest.approx(0.1748, abs=5e-5) and answer["deleted"] == []
    assert [(t["where"], t["account"], t["region"]) for t in answer["targets"]] == [("local", "123456789012",
                                                                                      "us-east-1")]

    refused = subprocess.run([str(BIN / "dogops"), "status", "--aws", "--enforce-ttl", "--config", str(CONFIG.resolve())],
                             env=_env(aws), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    # no terminal to ask, no --yes
    assert refused.returncode != 0 and "nothing deleted" in refused.stderr and "--yes" in refused.stderr
    declined = _on_a_terminal(aws, "n", "status", "--aws", "--enforce-ttl")
    assert declined.returncode != 0 and "nothing deleted" in declined.stderr
    assert "delete dogops-dev, dogops-scratch on the local stack (" in declined.stderr and "[y/N]" in declined.stderr
    assert client("sagemaker", aws).describe_endpoint(EndpointName="dogops-dev")["EndpointStatus"] == "InService"
    enforced = _on_a_terminal(aws, "y", "status", "--aws", "--enforce-ttl").stdout
    assert "stage dev expired at" in enforced and "deleting stack dogops-dev" in enforced
    assert "endpoint dogops-scratch expired at 2020-01-01T00:00Z and no stage stack owns it: deleting it" in enforced
    assert "but the image repositories dogops-dev/serving (" in enforced  # kept: destroy without --images
    cfn = client("cloudformation", aws)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert client("sagemaker", aws).list_endpoints()["Endpoints"] == []

    again = _dogops(aws, "status", "--aws", "--enforce-ttl", "--yes")
    assert "EXPIRED" not in again and "total: $0.0000/hour" in again and "nothing has expired" in again

    destroyed = _dogops(aws, "destroy", "--stage", "dev", "--images")
    assert "repository dogops-dev/serving: deleted with its images" in destroyed
    assert "nothing tagged project=dogops stage=dev remains" in destroyed
    assert client("ecr", aws).describe_repositories()["repositories"] == []


def test_enforce_ttl_without_aws_is_refused_before_any_call():
    result = run_script("dogops", "status", "--enforce-ttl", "--yes", env=script_env(AWS_ENDPOINT_URL="https://example.com"))
    assert result.returncode != 0 and "--enforce-ttl deletes what has expired on AWS: it needs --aws" in result.stderr


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
