"""The EC2 training instance's role and instance profile: read the data prefix, sync the checkpoint prefix, write
the model prefix, pull the training repository, write its own log group, and Session Manager. ``"*"`` only for the
actions IAM gives no resource-level permission (``NO_RESOURCE_LEVEL``)."""

import json

from . import training_roles
from .config import Stage

POLICY_NAME = "ec2-training-data-model-image-logs-ssm"
# Session Manager's minimum (AmazonSSMManagedInstanceCore also grants Run Command, inventory and every parameter).
SESSION_MANAGER = ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                   "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
# Taken from the SageMaker training role by name (an allow-list: a statement added there does not come along).
SHARED = ("ListTheData", "ReadTheData", "WriteTheModel", "ListTheCheckpoints", "SyncTheCheckpoints", "PullTheImage",
          "EcrLoginHasNoResourceLevelPermission")
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", *SESSION_MANAGER}


def name(stage: Stage) -> str:
    """The role's, instance profile's, security group's and launch template's name."""
    return f"{stage.project}-{stage.name}-ec2-training"


def log_group(stage: Stage) -> str:
    return f"/dogops/{stage.project}-{stage.name}/ec2-training"


def policy(partition: str, region: str, account: str, data: str, output: str, checkpoints: str, image: str,
           group: str) -> dict:
    """The role's one inline policy: the SageMaker training role's S3 and ECR statements, its own log group and
    Session Manager instead of SageMaker's log group and metrics."""
    shared = training_roles.policy(partition, region, account, data, output, checkpoints, image)["Statement"]
    group_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{group}"
    return {"Version": "2012-10-17", "Statement": [
        *(s for s in shared if s["Sid"] in SHARED),
        {"Sid": "WriteItsLogGroup", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
         "Resource": [group_arn, f"{group_arn}:*"]},
        {"Sid": "SessionManagerRegisters", "Effect": "Allow", "Action": "ssm:UpdateInstanceInformation",
         "Resource": f"arn:{partition}:ec2:{region}:{account}:instance/*"},
        {"Sid": "SessionManagerChannelsHaveNoResourceLevelPermission", "Effect": "Allow", "Action": SESSION_MANAGER,
         "Resource": "*"},
    ]}


def trust() -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def ensure_instance_profile(session, stage: Stage, data: str, output: str, checkpoints: str,
                            image: str) -> tuple[str, str, bool]:
    """Create or update the role (tagged) and its instance profile; ``(profile ARN, role ARN, created now)``."""
    iam = session.client("iam")
    caller = session.client("sts").get_caller_identity()
    partition, account = caller["Arn"].split(":")[1], caller["Account"]
    role = name(stage)
    try:
        role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust()), Tags=stage.tags(),
                                   Description=f"{stage.project} {stage.name} EC2 training")["Role"]["Arn"]
        created = True
    except iam.exceptions.EntityAlreadyExistsException:
        role_arn = iam.get_role(RoleName=role)["Role"]["Arn"]
        iam.tag_role(RoleName=role, Tags=stage.tags())
        created = False
    document = policy(partition, stage.region, account, data, output, checkpoints, image, log_group(stage))
    iam.put_role_policy(RoleName=role, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
    try:
        profile = iam.create_instance_profile(InstanceProfileName=role, Tags=stage.tags())["InstanceProfile"]
        created = True
    except iam.exceptions.EntityAlreadyExistsException:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    if not any(r["RoleName"] == role for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
        created = True
    return profile["Arn"], role_arn, created


def delete_instance_profile(session, stage: Stage) -> list[str]:
    """Delete the instance profile and the role; what was deleted."""
    iam, role = session.client("iam"), name(stage)

    def gone(call, **kwargs) -> bool:
        try:
            call(**kwargs)
            return True
        except iam.exceptions.NoSuchEntityException:
            return False

    gone(iam.remove_role_from_instance_profile, InstanceProfileName=role, RoleName=role)
    deleted = [f"instance profile {role}"] if gone(iam.delete_instance_profile, InstanceProfileName=role) else []
    gone(iam.delete_role_policy, RoleName=role, PolicyName=POLICY_NAME)
    return deleted + ([f"role {role}"] if gone(iam.delete_role, RoleName=role) else [])
