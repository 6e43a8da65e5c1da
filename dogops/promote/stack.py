"""Plan (a change set, described), apply (executed, with progress) and destroy one stage's stack, with boto3.

CloudFormation is the engine and keeps the state: a plan is a change set on the
stack, an empty one means nothing to do, and a failed apply is rolled back by
CloudFormation and reported from the stack's events. The model a plan deploys is
pinned first (``pin_model``).
"""

import hashlib
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
from .push import repositories

TEMPLATE = Path(__file__).with_name("template.yaml")
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
VERBS = {"Add": "create", "Remove": "delete"}


@dataclass
class Plan:
    """A described change set: its stack, id, type (CREATE or UPDATE) and changes; no changes is a no-op."""

    stack: str
    change_set: str | None
    change_set_type: str
    changes: list[dict]
    cost: dict


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


def plan(stage: Stage, image: str, model_data_url: str, session=None) -> Plan:
    """Create and describe the change set that takes the stack to ``image`` and ``model_data_url``."""
    session = session or boto3.Session(region_name=stage.region)
    cfn, s3 = session.client("cloudformation"), session.client("s3")
    bucket, key = parse_s3_uri(model_data_url)
    model_bytes = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    current = _stack(cfn, stage.stack_name)
    exists = current is not None and current["StackStatus"] != "REVIEW_IN_PROGRESS"
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in (current or {}).get("Parameters", [])}
    expires_at = previous.get("ExpiresAt") if exists else None  # kept, so an unchanged stage plans no change
    params = parameters(stage, image, model_data_url, _function_code(s3, bucket, stage.project),
                        expires_at or stage.expires_at())
    change_set_type = "UPDATE" if exists else "CREATE"
    name = f"{stage.stack_name}-{time.strftime('%Y%m%d%H%M%S')}"
    created = cfn.create_change_set(
        StackName=stage.stack_name, ChangeSetName=name, ChangeSetType=change_set_type,
        TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Tags=[{"Key": "project", "Value": stage.project}, {"Key": "stage", "Value": stage.name}])
    described = _wait_change_set(cfn, created["Id"])
    cost = estimate(stage, model_bytes)
    if described["Status"] == "FAILED":
        if not any(reason in described.get("StatusReason", "") for reason in NO_CHANGES):
            raise RuntimeError(f"change set {name} failed: {described.get('StatusReason')}")
        cfn.delete_change_set(ChangeSetName=created["Id"])
        return Plan(stage.stack_name, None, change_set_type, [], cost)
    return Plan(stage.stack_name, created["Id"], change_set_type,
                [c["ResourceChange"] for c in described["Changes"]], cost)


def _wait_change_set(cfn, change_set: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = cfn.describe_change_set(ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED") or time.monotonic() > deadline:
            return described
        time.sleep(2)


def format_plan(stage: Stage, p: Plan) -> str:
    """The changes, one per line (verb, logical id, type), then the cost estimate."""
    if not p.changes:
        lines = [f"stack {p.stack}: no changes"]
    else:
        lines = [f"stack {p.stack} ({'new' if p.change_set_type == 'CREATE' else 'update'}), "
                 f"{len(p.changes)} change(s):"]
        lines += [f"  {_verb(c):<20} {c['LogicalResourceId']:<28} {c['ResourceType']}" for c in p.changes]
    return "\n".join(lines + [format_estimate(stage, p.cost)])


def outputs(stage: Stage, session) -> dict[str, str]:
    """The stack's outputs (endpoint and function names, the function URL); empty when there is no stack."""
    current = _stack(session.client("cloudformation"), stage.stack_name)
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


def destroy(stage: Stage, session=None, echo=print, timeout: float = 3600, images: bool = False) -> None:
    """Delete the stack, what training made outside it (roles, instance profile, launch template, security group,
    instances) and with ``images`` the stage's ECR repositories; then check that nothing tagged with the project and
    stage is left (but the repositories kept without ``images``)."""
    session = session or boto3.Session(region_name=stage.region)
    cfn = session.client("cloudformation")
    current = _stack(cfn, stage.stack_name)
    if current is None:
        echo(f"stack {stage.stack_name}: none")
    else:
        seen = {e["EventId"] for e in _events(cfn, stage.stack_name)}
        cfn.delete_stack(StackName=current["StackId"])
        status = _wait(cfn, current["StackId"], seen, echo, timeout, gone_ok=True)
        if status != "DELETE_COMPLETE":
            raise RuntimeError(f"stack {stage.stack_name} ended {status}")
        echo(f"stack {stage.stack_name}: deleted")
    from . import ec2, training_roles  # what training on AWS made outside the stack

    for gone in ec2.cleanup(stage, session) + training_roles.cleanup(stage, session):
        echo(f"{gone}: deleted")
    ecr = session.client("ecr")
    kept = repositories(ecr, stage.project, stage.name)
    for repo in kept if images else []:
        ecr.delete_repository(repositoryName=repo["name"], force=True)
        echo(f"repository {repo['name']}: deleted with its images")
    left = leftovers(stage, session, images)
    if left:
        raise RuntimeError(f"still tagged project={stage.project} stage={stage.name}: {', '.join(left)}")
    echo(f"nothing tagged project={stage.project} stage={stage.name} remains" + (
        "" if images or not kept else f" but the image repositories {', '.join(r['name'] for r in kept)} "
        "(`dogops destroy --images` deletes them)"))


JOBS = {"training-job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
        "hyper-parameter-tuning-job": ("describe_hyper_parameter_tuning_job", "HyperParameterTuningJobName",
                                       "HyperParameterTuningJobStatus")}


def _ended(session, arn: str) -> bool:
    """A training or tuning job that has ended, or a terminated instance: records that cost nothing and that AWS
    keeps (jobs for good, instances for about an hour)."""
    kind, _, name = arn.rpartition(":")[2].partition("/")
    if kind == "instance":
        reservations = session.client("ec2").describe_instances(InstanceIds=[name])["Reservations"]
        return all(i["State"]["Name"] in ("shutting-down", "terminated") for r in reservations for i in r["Instances"])
    if kind not in JOBS:
        return False
    describe, key, status = JOBS[kind]
    return getattr(session.client("sagemaker"), describe)(**{key: name})[status] in ("Completed", "Failed", "Stopped")


def leftovers(stage: Stage, session, images: bool = True) -> list[str]:
    """ARNs still tagged with the stage (Resource Groups Tagging API, and ECR's own tags), and any endpoint of the
    stage's name; without ``images``, not the ECR repositories; never the jobs that ended or the instances terminated."""
    tagging = session.client("resourcegroupstaggingapi")
    pages = tagging.get_paginator("get_resources").paginate(TagFilters=[
        {"Key": "project", "Values": [stage.project]}, {"Key": "stage", "Values": [stage.name]}])
    arns = [r["ResourceARN"] for page in pages for r in page["ResourceTagMappingList"]
            if (images or ":ecr:" not in r["ResourceARN"]) and not _ended(session, r["ResourceARN"])]
    if images:
        arns += [r["arn"] for r in repositories(session.client("ecr"), stage.project, stage.name) if r["arn"] not in arns]
    endpoints = session.client("sagemaker").list_endpoints(NameContains=stage.stack_name)["Endpoints"]
    return arns + [e["EndpointArn"] for e in endpoints if e["EndpointName"] == stage.stack_name
                   and e["EndpointArn"] not in arns]
