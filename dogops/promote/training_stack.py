"""A stage's training infrastructure as a second CloudFormation stack, ``<project>-<stage>-training``
(``training.yaml``), planned and applied as change sets by ``stack.py`` as the stage's own stack is, and deleted
with it by ``dogops destroy``.

In the template, because they outlive a job and are the stage's, not the run's: the SageMaker training jobs' role
and, once ``promote train --ec2`` has run (``Ec2VpcId`` set), the EC2 instances' role, instance profile, log group,
security group and launch template. The roles share one inline policy (the data, model and checkpoint prefixes,
the training repository, ECR login) and each has its own (SageMaker's log group and metrics; the EC2 log group and
Session Manager): least privilege as one document, not two copies. Their parameters are what a run may change:
``--data``/``--output`` and the image's repository (the policies), ``--subnet`` (the VPC), ``--ssh-from-my-ip``
(an ingress rule, gone again on the next run without it); a run that changes none of them plans no change and
applies nothing. A SageMaker run keeps the EC2 parameters the stack has, so it neither adds nor removes the EC2 part.

Per run, outside the template, because each job has its own and AWS keeps them with the instance: the AMI (the
latest Amazon Linux 2023 at launch, or ``--ami``), the instance type, the user data (the job's image, prefixes and
hyperparameters), ``--key-name`` and the job's tags, sent with ``RunInstances`` over the launch template's version
that the stack made. No launch-template version is made per job: a version made outside the stack would be one
CloudFormation does not know (it never moves ``$Default``; its ``LatestVersionNumber`` would stop being its own).
"""

import re
from dataclasses import dataclass
from pathlib import Path

from ..s3upload import parse_s3_uri
from .config import Stage
from .runs import Locations
from .stack import apply, change_set, format_plan, outputs

TEMPLATE = Path(__file__).with_name("training.yaml")
EC2_PARAMETERS = ("Ec2VpcId", "SshCidrIp", "SshCidrIpv6")


def stack_name(stage: Stage) -> str:
    return f"{stage.stack_name}-training"


@dataclass(frozen=True)
class Ec2Access:
    """What EC2 training adds to the stack: the instances' VPC, and the one address SSH is open to (or none)."""

    vpc: str
    ssh_from: str | None = None


@dataclass(frozen=True)
class Infrastructure:
    """The stack's outputs after this run's change, and whether that change made or changed an IAM role or policy
    (a role IAM may take seconds to let the services use)."""

    outputs: dict[str, str]
    iam_changed: bool


def image_repository(image: str, account: str, region: str) -> tuple[str, str, str]:
    """``(repository, account, region)`` of ``REGISTRY/REPO@sha256:...``; a local registry's image counts as
    ``account``'s in ``region``."""
    host, _, rest = image.partition("/")
    repository = re.split(r"[@:]", rest, maxsplit=1)[0]
    ecr = re.match(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", host)
    return (repository, *ecr.groups()) if ecr else (repository, account, region)


def parameters(stage: Stage, where: Locations, image: str, account: str, volume_gb: int, expires_at: str,
               ec2: Ec2Access | None = None) -> dict[str, str]:
    """The template's parameters for a run of ``stage`` (``ec2``: none for a SageMaker run)."""
    buckets = {name: parse_s3_uri(uri) for name, uri in (("Data", where.data), ("Output", where.output),
                                                          ("Checkpoint", where.checkpoints))}
    repository, image_account, image_region = image_repository(image, account, stage.region)
    ssh = ec2.ssh_from if ec2 else None
    return {"Project": stage.project, "Stage": stage.name, "ExpiresAt": expires_at,
            **{f"{name}Bucket": bucket for name, (bucket, _) in buckets.items()},
            **{f"{name}Prefix": prefix for name, (_, prefix) in buckets.items()},
            "ImageRepository": repository, "ImageAccount": image_account, "ImageRegion": image_region,
            "LogRetentionDays": str(stage.log_retention_days), "VolumeGb": str(int(volume_gb)),
            "Ec2VpcId": ec2.vpc if ec2 else "", "SshCidrIp": ssh if ssh and ":" not in ssh else "",
            "SshCidrIpv6": ssh if ssh and ":" in ssh else ""}


def ensure(session, stage: Stage, where: Locations, image: str, volume_gb: int, echo=print,
           ec2: Ec2Access | None = None) -> Infrastructure:
    """Plan the stack for this run and apply the plan when it changes anything (its changes and events echoed)."""
    account = session.client("sts").get_caller_identity()["Account"]
    params = parameters(stage, where, image, account, volume_gb, stage.expires_at(), ec2)
    keep = ("ExpiresAt",) if ec2 else ("ExpiresAt", *EC2_PARAMETERS)
    plan = change_set(session, stage, stack_name(stage), TEMPLATE, params, keep, ("CAPABILITY_NAMED_IAM",))
    if plan.change_set:
        echo(format_plan(stage, plan))
        apply(plan, session, echo)
    return Infrastructure(outputs(session, plan.stack),
                          any(c["ResourceType"].startswith("AWS::IAM::") for c in plan.changes))
