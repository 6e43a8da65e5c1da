"""EventBridge Scheduler on the emulator: what moto's ``scheduler`` lacks for a stage's expiry; importing this module
patches it in.

- ``AWS::Scheduler::Schedule`` in a CloudFormation stack (moto accepts the type and creates nothing): the schedule
  is created, updated and deleted with the stack through moto's scheduler backend; ``Ref`` is its name,
  ``Fn::GetAtt Arn`` its ARN;
- schedules are stored, never run: here a one-time schedule (``at(yyyy-mm-ddThh:mm:ss)`` in its
  ``ScheduleExpressionTimezone``) whose time has come invokes its universal target once, as its execution role.
  The one target rehearsed is ``arn:aws:scheduler:::aws-sdk:cloudformation:deleteStack``: the role must trust
  ``scheduler.amazonaws.com`` and its identity policies allow ``cloudformation:DeleteStack`` on the stack (and
  ``iam:PassRole`` of the input's ``RoleARN``, passed to CloudFormation, a role that trusts
  ``cloudformation.amazonaws.com``), judged by the policy evaluation the emulator enforces (``iam_authorize``); then
  the stack is deleted as ``DeleteStack`` deletes it. A refusal, or any other target, is logged and not retried.
  A schedule whose time had already passed when it was created or last updated never runs (what AWS does with
  one is not documented; dogops never makes one). ``ActionAfterCompletion: DELETE`` deletes it after it ran.
"""

import json
import logging
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from moto.cloudformation.models import cloudformation_backends
from moto.core.common_models import CloudFormationModel
from moto.iam.models import iam_backends
from moto.scheduler.exceptions import ScheduleNotFound
from moto.scheduler.models import EventBridgeSchedulerBackend, scheduler_backends

from .iam_authorize import ALLOWED, evaluate, identity_policies
from .periodic import Periodic

log = logging.getLogger(__name__)
AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
UNIVERSAL = re.compile(r"arn:[\w-]+:scheduler:::aws-sdk:([\w-]+):(\w+)")
POLL_S = 1.0


class Schedule(CloudFormationModel):
    """A schedule a stack made: its group and name (the physical id is the name, as on AWS)."""

    def __init__(self, arn: str, group: str, name: str):
        self.arn, self.group, self.name = arn, group, name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @staticmethod
    def _arguments(props: dict[str, Any]) -> dict[str, Any]:
        target = dict(props["Target"])
        if "RetryPolicy" in target:
            target["RetryPolicy"] = {k: int(v) for k, v in target["RetryPolicy"].items()}
        window = {k: int(v) if k == "MaximumWindowInMinutes" else v for k, v in props["FlexibleTimeWindow"].items()}
        return {"description": props.get("Description"), "end_date": props.get("EndDate"),
                "flexible_time_window": window, "group_name": props.get("GroupName") or "default",
                "kms_key_arn": props.get("KmsKeyArn"), "schedule_expression": props["ScheduleExpression"],
                "schedule_expression_timezone": props.get("ScheduleExpressionTimezone"),
                "start_date": props.get("StartDate"), "state": props.get("State") or "ENABLED", "target": target}

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> "Schedule":
        props = cloudformation_json["Properties"]
        name = props.get("Name") or resource_name
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            name=name, action_after_completion=props.get("ActionAfterCompletion"), **cls._arguments(props))
        return cls(schedule.arn, schedule.group_name, name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: "Schedule", new_resource_name: str,
                                        cloudformation_json: dict[str, Any], account_id: str, region_name: str
                                        ) -> "Schedule":
        props = cloudformation_json["Properties"]
        arguments = cls._arguments(props)
        if (props.get("Name") or original_resource.name) != original_resource.name or \
                arguments["group_name"] != original_resource.group:  # a new name or group: a replacement
            cls.delete_from_cloudformation_json(original_resource.name, {"Properties": {
                "GroupName": original_resource.group}}, account_id, region_name)
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
        scheduler_backends[account_id][region_name].update_schedule(name=original_resource.name, **arguments)
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        group = (cloudformation_json.get("Properties") or {}).get("GroupName") or "default"
        try:
            scheduler_backends[account_id][region_name].delete_schedule(group, resource_name)
        except ScheduleNotFound:  # deleted outside the stack, or by its own ActionAfterCompletion
            pass


def due_at(schedule) -> float | None:
    """The epoch second a one-time schedule is due, or None (not an ``at()`` expression)."""
    match = AT.fullmatch(schedule.schedule_expression.strip())
    if not match:
        return None
    zone = ZoneInfo(schedule.schedule_expression_timezone or "UTC")
    return datetime.fromisoformat(match[1]).replace(tzinfo=zone).timestamp()


def _trusts(role, service: str) -> bool:
    document = role.assume_role_policy_document
    document = json.loads(document) if isinstance(document, str) else document
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        services = (statement.get("Principal") or {}).get("Service", [])
        actions = statement.get("Action", [])
        if statement.get("Effect") == "Allow" and service in ([services] if isinstance(services, str) else services) \
                and "sts:AssumeRole" in ([actions] if isinstance(actions, str) else actions):
            return True
    return False


def _role(arn: str, service: str):
    """The role ``arn`` names, if it exists and trusts ``service``; else a ``PermissionError`` saying which."""
    account, partition, name = arn.split(":")[4], arn.split(":")[1], arn.rsplit("/", 1)[-1]
    try:
        role = iam_backends[account][partition].get_role(name)
    except Exception:  # moto's NoSuchEntity
        raise PermissionError(f"role {arn} does not exist") from None
    if not _trusts(role, service):
        raise PermissionError(f"role {arn} does not trust {service}")
    return role


def _allow(role_arn: str, action: str, resource: str, context: dict | None = None) -> None:
    if evaluate(identity_policies(role_arn), action, resource, context).decision != ALLOWED:
        raise PermissionError(f"{role_arn} is not authorized to perform: {action} on resource: {resource}")


def delete_stack(account: str, region: str, role_arn: str, params: dict) -> str:
    """``cloudformation:DeleteStack`` as ``role_arn`` (the schedule's execution role) with the target's input."""
    backend = cloudformation_backends[account][region]
    name = params["StackName"]
    stack = backend.stacks.get(name) or next((s for s in backend.stacks.values() if s.name == name), None)
    stack_arn = stack.stack_id if stack else name
    _allow(role_arn, "cloudformation:DeleteStack", stack_arn)
    if params.get("RoleARN"):
        _allow(role_arn, "iam:PassRole", params["RoleARN"], {"iam:PassedToService": "cloudformation.amazonaws.com"})
        _role(params["RoleARN"], "cloudformation.amazonaws.com")
    if stack is None:
        return f"stack {name}: none (nothing to delete)"
    backend.delete_stack(stack.stack_id)
    return f"stack {stack.name} deleted"


TARGETS = {("cloudformation", "deleteStack"): delete_stack}


def invoke(account: str, region: str, schedule) -> str:
    """Run the schedule's universal target once, as its role; what happened, in words."""
    target = schedule.target
    match = UNIVERSAL.fullmatch(target["Arn"])
    operation = TARGETS.get((match[1], match[2])) if match else None
    if operation is None:
        return f"target {target['Arn']} is not rehearsed on the emulator"
    try:
        _role(target["RoleArn"], "scheduler.amazonaws.com")
        return operation(account, region, target["RoleArn"], json.loads(target.get("Input") or "{}"))
    except (PermissionError, ValueError, KeyError) as exc:
        return f"failed: {exc}"


class Firer:
    """One daemon thread that runs each due one-time schedule once (every ``POLL_S``)."""

    def __init__(self):
        self.ran: dict[str, float] = {}  # schedule ARN -> the last_modified_date it ran at
        self.history: list[tuple[str, str]] = []  # (schedule ARN, outcome), for the log and tests
        self.start = Periodic("scheduler", lambda: self.tick(time.time()), lambda: POLL_S).start

    def tick(self, now: float) -> None:
        for account, regions in list(scheduler_backends.items()):
            for region, backend in list(regions.items()):
                for group in list(backend.schedule_groups.values()):
                    for schedule in list(group.schedules.values()):
                        at = due_at(schedule)
                        if at is None or schedule.state != "ENABLED" or at > now or \
                                at < schedule.last_modified_date - 1 or \
                                self.ran.get(schedule.arn) == schedule.last_modified_date:
                            continue
                        self.ran[schedule.arn] = schedule.last_modified_date
                        outcome = invoke(account, region, schedule)
                        self.history.append((schedule.arn, outcome))
                        log.warning("schedule %s ran: %s", schedule.arn, outcome)
                        if schedule.action_after_completion == "DELETE":
                            Schedule.delete_from_cloudformation_json(
                                schedule.name, {"Properties": {"GroupName": group.name}}, account, region)


FIRER = Firer()
_moto_create_schedule = EventBridgeSchedulerBackend.create_schedule


def _create_schedule(self, *args, **kwargs):
    """moto's ``CreateSchedule``, and the firer started with the first schedule."""
    schedule = _moto_create_schedule(self, *args, **kwargs)
    FIRER.start()
    return schedule


EventBridgeSchedulerBackend.create_schedule = _create_schedule
