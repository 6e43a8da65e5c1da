"""A stage's expiry enforced by AWS itself, rehearsed on the emulator: the stack's EventBridge Scheduler schedule
(``at(expires-at)``, universal target ``cloudformation:deleteStack``) deletes the stack as the expiry stack's roles,
with no dogops command running; those roles may do no more than that."""

import dataclasses
import json
import time
from datetime import datetime, timezone

import pytest

from dogops.promote.config import load_stage
from dogops.promote.runs import Locations
from dogops.promote.stack import apply, change_set, ensure_expiry_roles, expiry_stack_name, plan
from dogops.promote.training_stack import TEMPLATE as TRAINING
from dogops.promote.training_stack import parameters as training_parameters

from ..services.processes import client
from .conftest import BUCKET, IMAGE


def _gone(cfn, stack: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"] == stack
                and s["StackStatus"] != "DELETE_COMPLETE"]:
            return True
        time.sleep(0.5)
    return False


def test_the_schedule_deletes_the_stage_stack_at_its_expiry_without_the_cli(aws, session):
    dev = load_stage("dev")
    roles = ensure_expiry_roles(session, dev, lambda _: None)
    assert set(roles) == {"ExpiryScheduleRoleArn", "StackDeleterRoleArn"}
    soon = dataclasses.replace(dev, ttl_hours=20 / 3600)  # 20 s ahead: the stack is made in about 5
    assert apply(plan(soon, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session), session, lambda _: None) \
        == "CREATE_COMPLETE"
    cfn, scheduler = client("cloudformation", aws), client("scheduler", aws)
    stack = cfn.describe_stacks(StackName="dogops-dev")["Stacks"][0]
    expires_at = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["ExpiresAt"]
    schedule = scheduler.get_schedule(Name="dogops-dev-expiry")
    assert schedule["ScheduleExpression"] == f"at({expires_at.removesuffix('Z')})"
    assert schedule["ScheduleExpressionTimezone"] == "UTC" and schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:cloudformation:deleteStack"
    assert target["RoleArn"] == roles["ExpiryScheduleRoleArn"]
    assert json.loads(target["Input"]) == {"StackName": stack["StackId"], "RoleARN": roles["StackDeleterRoleArn"]}

    assert _gone(cfn, "dogops-dev", 60), "the schedule did not delete the stack"
    deleted_at = datetime.now(timezone.utc)
    assert deleted_at >= datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert scheduler.list_schedules()["Schedules"] == []  # the schedule went with its stack
    assert client("sagemaker", aws).list_endpoints()["Endpoints"] == []
    assert cfn.describe_stacks(StackName=expiry_stack_name(dev))["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


@pytest.mark.parametrize(("action", "resource", "context", "decision"), [
    ("cloudformation:DeleteStack", "arn:aws:cloudformation:us-east-1:123456789012:stack/dogops-dev/1", None,
     "allowed"),
    ("cloudformation:DeleteStack", "arn:aws:cloudformation:us-east-1:123456789012:stack/dogops-prod/1", None,
     "implicitDeny"),
    ("cloudformation:CreateStack", "arn:aws:cloudformation:us-east-1:123456789012:stack/dogops-dev/1", None,
     "implicitDeny"),
    ("iam:PassRole", "arn:aws:iam::123456789012:role/dogops-dev-stack-deleter", "cloudformation.amazonaws.com",
     "allowed"),
    ("iam:PassRole", "arn:aws:iam::123456789012:role/dogops-prod-stack-deleter", "cloudformation.amazonaws.com",
     "implicitDeny"),
])
def test_the_schedule_role_may_only_delete_its_own_stage_stack(aws, session, action, resource, context, decision):
    # (the emulator's simulator does not evaluate condition keys: iam:PassedToService is checked by parliament)
    ensure_expiry_roles(session, load_stage("dev"), lambda _: None)
    entries = [{"ContextKeyName": "iam:PassedToService", "ContextKeyValues": [context], "ContextKeyType": "string"}]
    result = client("iam", aws).simulate_principal_policy(
        PolicySourceArn="arn:aws:iam::123456789012:role/dogops-dev-expiry-schedule", ActionNames=[action],
        ResourceArns=[resource], ContextEntries=entries if context else [])["EvaluationResults"][0]
    assert result["EvalDecision"] == decision


def test_a_schedule_whose_role_may_not_delete_the_stack_leaves_it(aws, session):
    """The emulator runs the target as its role: a role the scheduler may assume but whose policies do not allow
    DeleteStack deletes nothing (the stack is the expiry stack, which its own schedule role may not delete)."""
    dev = load_stage("dev")
    ensure_expiry_roles(session, dev, lambda _: None)
    iam, scheduler, cfn = client("iam", aws), client("scheduler", aws), client("cloudformation", aws)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    stack = cfn.describe_stacks(StackName=expiry_stack_name(dev))["Stacks"][0]["StackId"]
    at = datetime.fromtimestamp(time.time() + 2, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    for name, role in (("no-policy", iam.create_role(RoleName="scheduler-no-policy", AssumeRolePolicyDocument=json.dumps(
            trust))["Role"]["Arn"]), ("stage-role", "arn:aws:iam::123456789012:role/dogops-dev-expiry-schedule")):
        scheduler.create_schedule(Name=f"rogue-{name}", ScheduleExpression=f"at({at})", FlexibleTimeWindow={
            "Mode": "OFF"}, Target={"Arn": "arn:aws:scheduler:::aws-sdk:cloudformation:deleteStack", "RoleArn": role,
                                    "Input": json.dumps({"StackName": stack})})
    time.sleep(5)
    assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_an_expiry_to_the_minute_from_an_older_stack_is_kept_to_the_second(aws, session):
    """Stacks made before expiry went to the second hold ``YYYY-MM-DDTHH:MMZ``; a plan keeps that expiry as
    ``...:00Z``, the form the stage template's schedule takes."""
    dev = load_stage("dev")
    where = Locations(f"s3://{BUCKET}/data", f"s3://{BUCKET}/out", f"s3://{BUCKET}/ckpt")
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/training@sha256:" + "e" * 64
    made = change_set(session, dev, "dogops-minute", TRAINING, training_parameters(
        dev, where, image, "123456789012", 30, "2030-01-02T03:04Z"), keep=(), capabilities=("CAPABILITY_NAMED_IAM",))
    apply(made, session, lambda _: None)
    again = change_set(session, dev, "dogops-minute", TRAINING, training_parameters(
        dev, where, image, "123456789012", 30, dev.expires_at()), capabilities=("CAPABILITY_NAMED_IAM",))
    apply(again, session, lambda _: None)
    cfn = client("cloudformation", aws)
    stack = cfn.describe_stacks(StackName="dogops-minute")["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["ExpiresAt"] == "2030-01-02T03:04:00Z"
    cfn.delete_stack(StackName="dogops-minute")
