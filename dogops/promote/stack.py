"""Plan (a change set, described), apply (executed, with progress) and delete a stage's stacks, with boto3: the
stage's own stack (``template.yaml``: endpoint, function) here, its training stack in ``training_stack``.

CloudFormation is the engine and keeps the state: a plan is a change set on the
stack, an empty one means nothing to do, and a failed apply is rolled back by
CloudFormation and reported from the stack's events. The model a plan deploys is
pinned first (``pin_model``).
"""

import hashlib
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from ..lambda_package import function_zip
from ..s3upload import TRANSFER, parse_s3_uri
from .config import Stage, require_digest
from .prices import estimate, format_estimate

TEMPLATE = Path(__file__).with_name("template.yaml")
EXPIRY_TEMPLATE = Path(__file__).with_name("expiry.yaml")
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
VERBS = {"Add": "create", "Remove": "delete"}


@dataclass
class Plan:
    """A described change set: its stack, id, type (CREATE or UPDATE) and changes; no changes is a no-op."""

    stack: str
    change_set: str | None
    change_set_type: str
    changes: list[dict]
    cost: dict | None = None  # the stage stack's estimate (``prices``)


def _verb(change: dict) -> str:
    if change["Action"] != "Modify":
        return VERBS.get(change["Action"], change["Action"].lower())
    return {"True": "replace", "Conditional": "modify (may replace)"}.get(change.get("Replacement"), "modify")


def _stack(cfn, name: str) -> dict | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _function_code(s3, bucket: str, project: str) -> str:
    """Upload the function's zip to ``bucket`` under a key named by its content (once); return the key."""
    package, sha256 = function_zip()
    key = f"{project}/lambda/{sha256.replace('/', '_').replace('+', '-').rstrip('=')}.zip"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=package)
    return key


def download(session, url: str, into: Path) -> Path:
    """The object at ``url`` as ``into/model.tar.gz``."""
    bucket, key = parse_s3_uri(url)
    path = into / "model.tar.gz"
    session.client("s3").download_file(bucket, key, str(path))
    return path


def pin_model(session, model_data_url: str, project: str, check=lambda model_tar: None) -> str:
    """Download the model, ``check`` that file (``promote apply``: preflight), then upload those very bytes to
    ``<project>/models/<sha256>/model.tar.gz`` in the model's bucket; return that URL, the one the plan deploys.

    SageMaker's ModelDataUrl names a key, not a version, and each instance an endpoint starts (creation,
    scale-out, replacement) downloads it again; deploying the given key would serve whatever is written there
    later (a rerun job's output, another trial). A VersionId cannot be deployed, and an ETag compared at apply
    time only catches a change before it. So the deployed object is a copy of the checked bytes themselves (not
    a server-side copy of a key that may have changed since), under a key no job writes, named by its sha256.
    """
    bucket, _ = parse_s3_uri(model_data_url)
    with tempfile.TemporaryDirectory(prefix="dogops-model-") as tmp:
        model_tar = download(session, model_data_url, Path(tmp))
        check(model_tar)
        with open(model_tar, "rb") as f:
            key = f"{project}/models/{hashlib.file_digest(f, 'sha256').hexdigest()}/model.tar.gz"
        session.client("s3").upload_file(str(model_tar), bucket, key, Config=TRANSFER)
    return f"s3://{bucket}/{key}"


def parameters(stage: Stage, image: str, model_data_url: str, code_key: str, expires_at: str) -> dict:
    """The template's parameters for ``stage``."""
    require_digest(image)
    bucket, key = parse_s3_uri(model_data_url)
    return {"Project": stage.project, "Stage": stage.name, "ExpiresAt": expires_at, "ImageUri": image,
            "EcrRepository": image.split("/", 1)[1].split("@")[0], "ModelDataUrl": model_data_url,
            "ModelBucket": bucket, "ModelKey": key, "InstanceType": stage.instance_type,
            "MinCapacity": str(stage.min_capacity), "MaxCapacity": str(stage.max_capacity),
            "TargetInvocationsPerInstance": f"{stage.target_invocations:g}", "FunctionCodeBucket": bucket,
            "FunctionCodeKey": code_key, "ReservedConcurrency": str(stage.reserved_concurrency),
            "ProvisionedConcurrency": str(stage.provisioned_concurrency),
            "LogRetentionDays": str(stage.log_retention_days)}


def change_set(session, stage: Stage, stack: str, template: Path, params: dict[str, str],
               keep: tuple[str, ...] = ("ExpiresAt",), capabilities: tuple[str, ...] = ("CAPABILITY_IAM",)) -> Plan:
    """Create and describe the change set that takes ``stack`` (tagged with the stage's project and stage) to
    ``template`` with ``params``; the parameters named in ``keep`` hold the stack's current values where it has
    them (the expiry, so an unchanged stage plans no change). No changes: the change set is deleted."""
    cfn = session.client("cloudformation")
    current = _stack(cfn, stack)
    exists = current is not None and current["StackStatus"] != "REVIEW_IN_PROGRESS"
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])} if exists else {}
    params = {**params, **{key: previous[key] for key in keep if key in previous}}
    if re.fullmatch(r".+T\d\d:\d\dZ", params.get("ExpiresAt", "")):  # a stack made when expiry was to the minute
        params["ExpiresAt"] = params["ExpiresAt"][:-1] + ":00Z"
    change_set_type = "UPDATE" if exists else "CREATE"
    name = f"{stack}-{time.strftime('%Y%m%d%H%M%S')}"
    try:
        created = cfn.create_change_set(
            StackName=stack, ChangeSetName=name, ChangeSetType=change_set_type, TemplateBody=template.read_text(),
            Capabilities=list(capabilities),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Tags=[{"Key": "project", "Value": stage.project}, {"Key": "stage", "Value": stage.name}])
    except ClientError as exc:  # an unchanged stack, refused at once rather than as a FAILED change set
        if not any(reason in str(exc) for reason in NO_CHANGES):
            raise
        return Plan(stack, None, change_set_type, [])
    described = _wait_change_set(cfn, created["Id"])
    if described["Status"] == "FAILED":
        if not any(reason in described.get("StatusReason", "") for reason in NO_CHANGES):
            raise RuntimeError(f"change set {name} failed: {described.get('StatusReason')}")
        cfn.delete_change_set(ChangeSetName=created["Id"])
        return Plan(stack, None, change_set_type, [])
    return Plan(stack, created["Id"], change_set_type, [c["ResourceChange"] for c in described["Changes"]])


def plan(stage: Stage, image: str, model_data_url: str, session=None) -> Plan:
    """Create and describe the change set that takes the stage's stack to ``image`` and ``model_data_url``."""
    session = session or boto3.Session(region_name=stage.region)
    s3 = session.client("s3")
    bucket, key = parse_s3_uri(model_data_url)
    model_bytes = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    params = parameters(stage, image, model_data_url, _function_code(s3, bucket, stage.project), stage.expires_at())
    p = change_set(session, stage, stage.stack_name, TEMPLATE, params)
    p.cost = estimate(stage, model_bytes)
    return p


def expiry_stack_name(stage: Stage) -> str:
    return f"{stage.stack_name}-expiry"


def plan_expiry(session, stage: Stage) -> Plan:
    """The change set that takes the stage's expiry stack (``expiry.yaml``: the roles with which its stack's schedule
    deletes that stack at ``expires-at``) to its template. Apart from the stage's stack, so that the roles outlive
    the deletion they carry out."""
    return change_set(session, stage, expiry_stack_name(stage), EXPIRY_TEMPLATE,
                      {"Project": stage.project, "Stage": stage.name}, keep=(), capabilities=("CAPABILITY_NAMED_IAM",))


def ensure_expiry_roles(session, stage: Stage, echo=print, p: Plan | None = None) -> dict[str, str]:
    """Apply the expiry stack's plan (``p``, already shown; else planned here and echoed) when it changes anything;
    return the stack's outputs."""
    if p is None:
        p = plan_expiry(session, stage)
        if p.change_set:
            echo(format_plan(stage, p))
    if p.change_set:
        apply(p, session, echo)
    return outputs(session, p.stack)


def _wait_change_set(cfn, change_set: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = cfn.describe_change_set(ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED") or time.monotonic() > deadline:
            return described
        time.sleep(2)


def format_plan(stage: Stage, p: Plan) -> str:
    """The changes, one per line (verb, logical id, type), then the cost estimate (the stage's stack has one)."""
    if not p.changes:
        lines = [f"stack {p.stack}: no changes"]
    else:
        lines = [f"stack {p.stack} ({'new' if p.change_set_type == 'CREATE' else 'update'}), "
                 f"{len(p.changes)} change(s):"]
        lines += [f"  {_verb(c):<20} {c['LogicalResourceId']:<28} {c['ResourceType']}" for c in p.changes]
    return "\n".join(lines + ([] if p.cost is None else [format_estimate(stage, p.cost)]))


def outputs(session, stack: str) -> dict[str, str]:
    """The stack's outputs (the stage's: endpoint and function names, the function URL); empty when there is none."""
    current = _stack(session.client("cloudformation"), stack)
    return {o["OutputKey"]: o["OutputValue"] for o in (current or {}).get("Outputs", [])}


def discard(p: Plan, session) -> None:
    """Delete a plan's change set, and the empty stack a CREATE change set leaves behind."""
    if p.change_set is None:
        return
    cfn = session.client("cloudformation")
    cfn.delete_change_set(ChangeSetName=p.change_set)
    if p.change_set_type == "CREATE":
        cfn.delete_stack(StackName=p.stack)


def apply(p: Plan, session, echo=print, timeout: float = 3600) -> str:
    """Execute the plan and wait, echoing stack events; return the final status or raise with the failures."""
    if p.change_set is None:
        echo(f"stack {p.stack}: no changes; nothing executed")
        return "NO_CHANGES"
    cfn = session.client("cloudformation")
    seen = {e["EventId"] for e in _events(cfn, p.stack)}
    cfn.execute_change_set(ChangeSetName=p.change_set)
    status = _wait(cfn, p.stack, seen, echo, timeout)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        failures = [e for e in _events(cfn, p.stack) if e["EventId"] not in seen and e["ResourceStatus"].endswith(
            "_FAILED") and e.get("ResourceStatusReason")]
        detail = "; ".join(f"{e['LogicalResourceId']} ({e['ResourceType']}): {e['ResourceStatusReason']}"
                           for e in failures) or "no resource reported a reason"
        raise RuntimeError(f"stack {p.stack} ended {status}: {detail}")
    return status


def _events(cfn, stack: str) -> list[dict]:
    try:
        pages = cfn.get_paginator("describe_stack_events").paginate(StackName=stack)
        return [e for page in pages for e in page["StackEvents"]]
    except ClientError:
        return []


def _wait(cfn, stack: str, seen: set, echo, timeout: float, gone_ok: bool = False) -> str:
    """Poll until the stack leaves *_IN_PROGRESS, echoing each new event oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        for event in reversed(_events(cfn, stack)):
            if event["EventId"] not in seen:
                seen.add(event["EventId"])
                echo(f"  {event['Timestamp']:%H:%M:%S} {event['ResourceStatus']:<20} {event['LogicalResourceId']} "
                     f"{event.get('ResourceStatusReason') or ''}".rstrip())
        current = _stack(cfn, stack)
        if current is None and gone_ok:
            return "DELETE_COMPLETE"
        status = current["StackStatus"] if current else "MISSING"
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack {stack} still {status} after {timeout:g} s")
        time.sleep(2)


def delete_stack(session, stack: str, echo=print, timeout: float = 3600) -> None:
    """Delete ``stack`` and wait, echoing its events; no such stack is said, not an error."""
    cfn = session.client("cloudformation")
    current = _stack(cfn, stack)
    if current is None:
        echo(f"stack {stack}: none")
        return
    seen = {e["EventId"] for e in _events(cfn, stack)}
    cfn.delete_stack(StackName=current["StackId"])
    status = _wait(cfn, current["StackId"], seen, echo, timeout, gone_ok=True)
    if status != "DELETE_COMPLETE":
        raise RuntimeError(f"stack {stack} ended {status}")
    echo(f"stack {stack}: deleted")
