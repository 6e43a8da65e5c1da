"""``dogops deploy``: the current best model as a SageMaker endpoint, with the boto3 calls AWS takes.

CreateModel (serving image + the best trial's ``model.tar.gz``, named by its content), CreateEndpointConfig,
then CreateEndpoint, or UpdateEndpoint when it exists (a new config rolls the
endpoint without downtime). ``AWS_ENDPOINT_URL`` points the same calls at the
local emulator; the SageMaker and S3 clients must both reach it or both reach AWS
(``dogops.target``, from their resolved endpoints).
"""

import hashlib
import logging
import os
import time

import boto3
from botocore.exceptions import ClientError

from services.stack import settings

from .s3upload import parse_s3_uri
from .target import LOCAL, check

log = logging.getLogger(__name__)


def execution_role(local: bool) -> str:
    """``DOGOPS_SAGEMAKER_ROLE_ARN``; against the local stack, the stack's SageMaker execution role."""
    role = os.environ.get("DOGOPS_SAGEMAKER_ROLE_ARN")
    if role:
        return role
    if local:
        return settings.sagemaker_role_arn()
    raise ValueError("set DOGOPS_SAGEMAKER_ROLE_ARN to the SageMaker execution role to deploy to AWS")


def deploy_model(record: dict, endpoint: str, image: str, instance_type: str = "ml.m5.large") -> dict:
    """Deploy the model of a best-trial record to ``endpoint``; return the names created."""
    url = record["model_data_url"]
    if not url.startswith("s3://"):
        raise ValueError(f"the best model is at {url}, not in S3: run `dogops tune --output s3://BUCKET/PREFIX`")
    sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
    local = check({"sagemaker": sm.meta.endpoint_url, "s3": s3.meta.endpoint_url}, None) == LOCAL
    bucket, key = parse_s3_uri(url)
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]  # a retrained model at the same key
    suffix = hashlib.sha256(f"{url}|{etag}|{image}".encode()).hexdigest()[:8]
    model = f"{endpoint}-{suffix}"
    config = f"{endpoint}-config-{suffix}"
    try:
        sm.create_model(ModelName=model, ExecutionRoleArn=execution_role(local),
                        PrimaryContainer={"Image": image, "ModelDataUrl": url},
                        Tags=[{"Key": "dogops:trial", "Value": record["trial"]}])
        sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
            "InstanceType": instance_type}])
    except ClientError as exc:
        if "already exist" not in str(exc):
            raise
        log.info("model %s is already deployed as %s", url, model)
    described = _described(sm, endpoint)
    if described is not None and described["EndpointConfigName"] != config:
        described = _settled(sm, endpoint, described)
    if described is None:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    elif described["EndpointConfigName"] != config:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    log.info("endpoint %s serves trial %s (%s) through %s", endpoint, record["trial"], url, config)
    return {"endpoint": endpoint, "model": model, "endpoint_config": config}


def _described(sm, endpoint: str) -> dict | None:
    try:
        return sm.describe_endpoint(EndpointName=endpoint)
    except ClientError:
        return None


def _settled(sm, endpoint: str, described: dict, timeout_s: float = 3600, poll_s: float = 5) -> dict | None:
    """The endpoint's description once no operation is in progress on it (SageMaker refuses UpdateEndpoint
    until then: ``Cannot update in-progress endpoint``); None once it is deleted."""
    deadline = time.monotonic() + timeout_s
    while described is not None and described["EndpointStatus"] in settings.ENDPOINT_IN_PROGRESS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {endpoint} is still {described['EndpointStatus']} after {timeout_s:.0f} s")
        log.info("endpoint %s is %s: waiting for it before the update", endpoint, described["EndpointStatus"])
        time.sleep(poll_s)
        described = _described(sm, endpoint)
    return described
