"""The local stack's one-shot steps, with the boto3 calls that would target AWS.

    python -m services.stack.bootstrap seed --base-dir DIR [--data DIR]
    python -m services.stack.bootstrap publish --base-dir DIR --image IMAGE
    python -m services.stack.bootstrap samples --out DIR

``seed`` creates the bucket and the SageMaker execution role (what the SDK's
configuration from ``dogops env`` names), uploads the data set (generated unless given) and
lays out a SageMaker ``/opt/ml`` tree under ``--base-dir`` (the training channel
copied down from S3, the ``input/config`` files) that ``train`` runs on.
``publish`` packs the trained ``model/`` as SageMaker does, uploads it, and
deploys the endpoint and the Lambda function. boto3 finds the emulator through
``AWS_ENDPOINT_URL`` like any other endpoint.
"""

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import boto3

from dogops import lambda_deploy, lambda_package, samples
from dogops.deploy import deploy_model
from dogops.s3upload import upload_dir
from dogops.synthetic import generate
from training.archive import pack
from training.artifact import verify_artifact
from training.sagemaker_env import resource_config, write_job_config

from ..jobs.sagemaker_s3 import download_prefix
from . import settings

log = logging.getLogger(__name__)

JOB = "dogops-local"
MODEL_KEY = f"training/{JOB}/output/model.tar.gz"
DATA_PREFIX = "data"
CHANNEL = "training"
HYPERPARAMETERS = {"backbone": "efficientnet_lite0", "image_size": "64", "epochs": "12", "learning_rate": "0.003",
                   "batch_size": "32", "seed": "0"}
INSTANCE_TYPE = "ml.m5.xlarge"
INPUT_DATA_CONFIG = {CHANNEL: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                               "RecordWrapperType": "None"}}


def model_data_url() -> str:
    return f"s3://{settings.BUCKET}/{MODEL_KEY}"


def _ensure_bucket(s3) -> None:
    region = s3.meta.region_name
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=settings.BUCKET, **extra)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def sagemaker_role_policy(region: str, account: str) -> dict:
    """What a SageMaker training job or model of the stack may do, and no more: AWS's SDK v3 role policy for
    training and serving (sagemaker.core.helper.iam_policies), with S3 narrowed to the stack's bucket and the logs
    to SageMaker's log groups. SDK v3 checks the wildcard actions (ECR token, metrics, the network interfaces of a
    job in a VPC) with iam:SimulatePrincipalPolicy before it trains or deploys."""
    bucket = f"arn:aws:s3:::{settings.BUCKET}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "TheStacksBucket", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [bucket, f"{bucket}/*"]},
        {"Sid": "PullImages", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullImageLayers", "Effect": "Allow",
         "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"],
         "Resource": "arn:aws:ecr:*:*:repository/*"},
        {"Sid": "SageMakerLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*"},
        {"Sid": "JobMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        {"Sid": "JobsInAVpc", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
            "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]}]}


SAGEMAKER_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def ensure_sagemaker_role() -> str:
    """The stack's SageMaker execution role (``settings.SAGEMAKER_ROLE``), made or brought up to date; its ARN."""
    return lambda_deploy.ensure_role(settings.SAGEMAKER_ROLE, sagemaker_role_policy(settings.REGION, settings.ACCOUNT),
                                     trust=SAGEMAKER_TRUST, policy_name="training-jobs-and-models",
                                     description="dogops: SageMaker training jobs and models on the local stack")


def seed(base_dir: Path, data_dir: Path | None = None) -> None:
    """Bucket, execution role, data in S3, and the SageMaker tree under ``base_dir`` that ``train`` runs on."""
    s3 = boto3.client("s3")
    _ensure_bucket(s3)
    ensure_sagemaker_role()
    if data_dir is None:
        data_dir = base_dir / "data"
        generate(data_dir, classes=10, per_class=30, size=64, seed=0)
    upload_dir(data_dir, f"s3://{settings.BUCKET}/{DATA_PREFIX}", client=s3)
    channel = base_dir / "input" / "data" / CHANNEL
    shutil.rmtree(channel, ignore_errors=True)
    count = download_prefix(s3, f"s3://{settings.BUCKET}/{DATA_PREFIX}/", channel)
    write_job_config(base_dir, HYPERPARAMETERS, INPUT_DATA_CONFIG, resource_config("algo-1", ["algo-1"], INSTANCE_TYPE))
    log.info("seeded s3://%s/%s and %s (%d files in channel %s)", settings.BUCKET, DATA_PREFIX, base_dir, count, CHANNEL)


def publish(base_dir: Path, serving_image: str) -> dict:
    """Upload ``base_dir/model`` as ``model.tar.gz``, deploy the endpoint and the function."""
    model_dir = base_dir / "model"
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise FileNotFoundError(f"{model_dir} holds no trained model: run `train` first")
    verify_artifact(model_dir)  # a half-written or modified model is refused (ArtifactError says which file)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "model.tar.gz"
        pack(model_dir, archive)
        boto3.client("s3").upload_file(str(archive), settings.BUCKET, MODEL_KEY)
    deploy_model({"model_data_url": model_data_url(), "trial": JOB}, settings.ENDPOINT_NAME, serving_image)
    package, sha256 = lambda_package.function_zip()
    function = lambda_deploy.deploy_function(settings.FUNCTION_NAME, settings.ENDPOINT_NAME, package, sha256)
    log.info("published %s: endpoint %s, function %s", model_data_url(), settings.ENDPOINT_NAME, function["arn"])
    return {"model_data_url": model_data_url(), "endpoint": settings.ENDPOINT_NAME, "function": settings.FUNCTION_NAME}


def write_samples(samples_dir: Path) -> list[str]:
    """The images the gateway serves under ``/samples/``; return their file names."""
    return samples.write_samples(samples_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack.bootstrap", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    seed_step = steps.add_parser("seed", help="bucket, data in S3, the /opt/ml tree for `train`")
    seed_step.add_argument("--base-dir", type=Path, required=True)
    seed_step.add_argument("--data", type=Path, help="a data set in the dogImages layout (default: generated)")
    publish_step = steps.add_parser("publish", help="model.tar.gz to S3, the endpoint and the function")
    publish_step.add_argument("--base-dir", type=Path, required=True)
    publish_step.add_argument("--image", required=True, help="the serving image the endpoint's model names")
    samples_step = steps.add_parser("samples", help="sample images for URL predictions and the demo page")
    samples_step.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    if args.step == "seed":
        seed(args.base_dir, args.data)
    elif args.step == "publish":
        print(json.dumps(publish(args.base_dir, args.image)), flush=True)
    else:
        print(json.dumps(write_samples(args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
