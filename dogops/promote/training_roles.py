"""The training jobs' role of a stage: read the data prefix, write the model prefix, sync the checkpoint prefix,
pull the training repository, write the jobs' logs and metrics. Nothing else, and ``"*"`` only for the two actions
IAM gives no resource-level permission (``NO_RESOURCE_LEVEL``)."""

import json
import re

from ..s3upload import parse_s3_uri
from .config import Stage

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
METRIC_NAMESPACE = "/aws/sagemaker/TrainingJobs"
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
POLICY_NAME = "training-data-model-image-logs"


def role_name(stage: Stage) -> str:
    return f"{stage.project}-{stage.name}-training"


def _objects(partition: str, uri: str) -> tuple[str, str, str]:
    """``(bucket ARN, objects-under-the-prefix ARN, prefix)`` of an ``s3://`` prefix."""
    bucket, prefix = parse_s3_uri(uri)
    return (f"arn:{partition}:s3:::{bucket}", "/".join(filter(None, [f"arn:{partition}:s3:::{bucket}", prefix, "*"])),
            prefix)


def _list(sid: str, bucket_arn: str, prefix: str) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"] if prefix else ["*"]}}}


def repository_arn(image: str, partition: str, account: str, region: str) -> str:
    """The ECR repository of ``REGISTRY/REPO@sha256:...``; a local registry's image counts as this account's."""
    host, _, rest = image.partition("/")
    repository = re.split(r"[@:]", rest, maxsplit=1)[0]
    ecr = re.match(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", host)
    if ecr:
        account, region = ecr.groups()
    return f"arn:{partition}:ecr:{region}:{account}:repository/{repository}"


def policy(partition: str, region: str, account: str, data: str, output: str, checkpoints: str, image: str) -> dict:
    """The role's one inline policy."""
    data_bucket, data_objects, data_prefix = _objects(partition, data)
    _, output_objects, _ = _objects(partition, output)
    checkpoint_bucket, checkpoint_objects, checkpoint_prefix = _objects(partition, checkpoints)
    group = f"arn:{partition}:logs:{region}:{account}:log-group:{LOG_GROUP}"
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
        {"Sid": "WriteTheLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
         "Resource": [group, f"{group}:*"]},
        {"Sid": "PublishTheMetricsNoResourceLevelPermission", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
         "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}},
    ]}


def trust(account: str) -> dict:
    """SageMaker may assume it, for this account's jobs only (no confused deputy)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]}


def ensure_role(session, stage: Stage, data: str, output: str, checkpoints: str, image: str) -> tuple[str, bool]:
    """Create or update the stage's training role (tagged project, stage, expires-at); ``(ARN, created now)``."""
    iam = session.client("iam")
    caller = session.client("sts").get_caller_identity()
    partition, account = caller["Arn"].split(":")[1], caller["Account"]
    name = role_name(stage)
    tags = stage.tags()
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust(account)), Tags=tags,
                              Description=f"{stage.project} {stage.name} training jobs")["Role"]["Arn"]
        created = True
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust(account)))
        iam.tag_role(RoleName=name, Tags=tags)
        created = False
    document = policy(partition, stage.region, account, data, output, checkpoints, image)
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
    return arn, created


def delete_role(session, stage: Stage) -> bool:
    """Delete the stage's training role (for ``dogops destroy``); False when there was none."""
    iam = session.client("iam")
    try:
        iam.delete_role_policy(RoleName=role_name(stage), PolicyName=POLICY_NAME)
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        iam.delete_role(RoleName=role_name(stage))
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def cleanup(stage: Stage, session) -> list[str]:
    """What ``dogops promote train``/``tune`` created outside the stage's stack, deleted (for ``dogops destroy``):
    the stage's training role. The names deleted (none when there was nothing)."""
    return [f"IAM role {role_name(stage)}"] if delete_role(session, stage) else []
