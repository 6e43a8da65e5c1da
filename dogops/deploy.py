"""``dogops deploy``: the current best model as a SageMaker endpoint, with the boto3 calls AWS takes.

CreateModel (serving image + the best trial's ``model.tar.gz``, named by its content), CreateEndpointConfig,
then CreateEndpoint, or UpdateEndpoint when it exists (a new config rolls the
endpoint without downtime). ``AWS_ENDPOINT_URL`` points the same calls at the
local emulator.
"""

import hashlib
import logging
import os

import boto3
from botocore.exceptions import ClientError

from .s3upload import parse_s3_uri

log = logging.getLogger(__name__)

LOCAL_ROLE = "arn:aws:iam::123456789012:role/dogops-sagemaker-local"


def execution_role() -> str:
    """``DOGOPS_SAGEMAKER_ROLE_ARN``; against an emulator a local placeholder will do."""
    role = os.environ.get("DOGOPS_SAGEMAKER_ROLE_ARN")
    if role:
        return role
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER"):
        return LOCAL_ROLE
    raise ValueError("set DOGOPS_SAGEMAKER_ROLE_ARN to the SageMaker execution role to deploy to AWS")


def deploy_model(record: dict, endpoint: str, image: str, instance_type: str = "ml.m5.large") -> dict:
    """Deploy the model of a best-trial record to ``endpoint``; return the names created."""
    url = record["model_data_url"]
    if not url.startswith("s3://"):
        raise ValueError(f"the best model is at {url}, not in S3: run `dogops tune --output s3://BUCKET/PREFIX`")
    sm = boto3.client("sagemaker")
    bucket, key = parse_s3_uri(url)
    etag = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ETag"]  # a retrained model at the same key
    suffix = hashlib.sha256(f"{url}|{etag}|{image}".encode()).hexdigest()[:8]
    model = f"{endpoint}-{suffix}"
    config = f"{endpoint}-config-{suffix}"
    try:
        sm.create_model(ModelName=model, ExecutionRoleArn=execution_role(),
                        PrimaryContainer={"Image": image, "ModelDataUrl": url},
                        Tags=[{"Key": "dogops:trial", "Value": record["trial"]}])
        sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
            "InstanceType": instance_type}])
    except ClientError as exc:
        if "already exist" not in str(exc):
            raise
        log.info("model %s is already deployed as %s", url, model)
    try:
        current = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except ClientError:
        current = None
    if current is None:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    elif current != config:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    log.info("endpoint %s serves trial %s (%s) through %s", endpoint, record["trial"], url, config)
    return {"endpoint": endpoint, "model": model, "endpoint_config": config}
