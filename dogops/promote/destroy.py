"""``dogops destroy``: a stage's stacks deleted (its own, then, once its EC2 training instances are terminated, its
training stack), with ``--images`` its ECR repositories; then nothing tagged with the project and stage may remain."""

import boto3

from . import ec2, training_stack
from .config import Stage
from .push import repositories
from .stack import delete_stack, expiry_stack_name

JOBS = {"training-job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
        "hyper-parameter-tuning-job": ("describe_hyper_parameter_tuning_job", "HyperParameterTuningJobName",
                                       "HyperParameterTuningJobStatus")}


def destroy(stage: Stage, session=None, echo=print, timeout: float = 3600, images: bool = False) -> None:
    """Delete the stage's stack, the EC2 training instances still running, the training stack (roles, instance
    profile, security group, launch template, log group), the expiry stack (its schedule's roles) and with ``images`` the stage's ECR repositories; then
    check that nothing tagged with the project and stage is left (but the repositories kept without ``images``)."""
    session = session or boto3.Session(region_name=stage.region)
    delete_stack(session, stage.stack_name, echo, timeout)
    for instance in ec2.terminate_instances(stage, session):  # they use the training stack's group and profile
        echo(f"instance {instance}: terminated")
    delete_stack(session, training_stack.stack_name(stage), echo, timeout)
    delete_stack(session, expiry_stack_name(stage), echo, timeout)  # last: the roles that delete the stage's stack
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
    pages = session.client("sagemaker").get_paginator("list_endpoints").paginate(NameContains=stage.stack_name)
    endpoints = [e for page in pages for e in page["Endpoints"]]  # 10 a page on AWS
    return arns + [e["EndpointArn"] for e in endpoints if e["EndpointName"] == stage.stack_name
                   and e["EndpointArn"] not in arns]
