"""A stage's expiry enforced by AWS itself, rehearsed on the emulator: the stack's EventBridge Scheduler schedule
(``at(expires-at)``, universal target ``cloudformation:deleteStack``) deletes the stack as the expiry stack's roles,
with no dogops command running; those roles may do no more than that."""

import dataclasses
import json
import time
from datetime import datetime, timezone

import pytest

from dogops.promote.config import load_stage
from dogops.promote.stack import apply, ensure_expiry_roles, expiry_stack_name, plan

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
    started = time.monotonic()
    soon = dataclasses.replace(dev, ttl_hours=12 / 3600)  # 12 s ahead: the stack is made in about 5
    assert apply(plan(soon, IMAGE, f"s3://{BUCKET}/one/model.tar.gz", session), session, lambda _: None) \
        == "CREATE_COMPLETE"
    assert time.monotonic() - started < 10, "the stack took too long to make for a 12 s expiry"
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

    assert _gone(cfn, "dogops-dev", 30), "the schedule did not delete the stack"
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
