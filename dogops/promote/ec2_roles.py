"""The EC2 training instance's role and instance profile: read the data prefix, sync the checkpoint prefix, write
the model prefix, pull the training repository, write its own log group, and Session Manager. ``"*"`` only for the
actions IAM gives no resource-level permission (``NO_RESOURCE_LEVEL``)."""

import json

from .config import Stage
from .training_roles import _list, _objects, repository_arn

POLICY_NAME = "ec2-training-data-model-image-logs-ssm"
# Session Manager's minimum (AmazonSSMManagedInstanceCore also grants Run Command, inventory and every parameter).
SESSION_MANAGER = ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                   "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", *SESSION_MANAGER}


def name(stage: Stage) -> str:
    """The role's, instance profile's, security group's and launch template's name."""
    return f"{stage.project}-{stage.name}-ec2-training"


def log_group(stage: Stage) -> str:
    return f"/dogops/{stage.project}-{stage.name}/ec2-training"


def tags(stage: Stage) -> list[dict]:
    return [{"Key": "project", "Value": stage.project}, {"Key": "stage", "Value": stage.name},
            {"Key": "expires-at", "Value": stage.expires_at()}]


def policy(partition: str, region: str, account: str, data: str, output: str, checkpoints: str, image: str,
           group: str) -> dict:
    """The role's one inline policy."""
    data_bucket, data_objects, data_prefix = _objects(partition, data)
    _, output_objects, _ = _objects(partition, output)
    checkpoint_bucket, checkpoint_objects, checkpoint_prefix = _objects(partition, checkpoints)
    group_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{group}"
    return {"Version": "2012-10-17", "Statement": [
        _list("ListTheData", data_bucket, data_prefix),
        {"Sid": "ReadTheData", "Effect": "Allow", "Action": "s3:GetObject", "Resource": data_objects},
        {"Sid": "WriteTheModel", "Effect": "Allow", "Action": "s3:PutObject", "Resource": output_objects},
        _list("ListTheCheckpoints", checkpoint_bucket, checkpoint_prefix),
        {"Sid": "SyncTheCheckpoints", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": checkpoint_objects},
        {"Sid": "PullTheImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": repository_arn(image, partition, account, region)},
        {"Sid": "EcrLoginHasNoResourceLevelPermission", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
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
        role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust()), Tags=tags(stage),
                                   Description=f"{stage.project} {stage.name} EC2 training")["Role"]["Arn"]
        created = True
    except iam.exceptions.EntityAlreadyExistsException:
        role_arn = iam.get_role(RoleName=role)["Role"]["Arn"]
        iam.tag_role(RoleName=role, Tags=tags(stage))
        created = False
    document = policy(partition, stage.region, account, data, output, checkpoints, image, log_group(stage))
    iam.put_role_policy(RoleName=role, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
    try:
        profile = iam.create_instance_profile(InstanceProfileName=role, Tags=tags(stage))["InstanceProfile"]
        created = True
    except iam.exceptions.EntityAlreadyExistsException:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    if not any(r["RoleName"] == role for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
        created = True
    return profile["Arn"], role_arn, created


def delete_instance_profile(session, stage: Stage) -> list[str]:
    """Delete the instance profile and the role; what was deleted."""
    iam, role, deleted = session.client("iam"), name(stage), []
    try:
        iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=role)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        iam.delete_instance_profile(InstanceProfileName=role)
        deleted.append(f"instance profile {role}")
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        iam.delete_role_policy(RoleName=role, PolicyName=POLICY_NAME)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        iam.delete_role(RoleName=role)
        deleted.append(f"role {role}")
    except iam.exceptions.NoSuchEntityException:
        pass
    return deleted
