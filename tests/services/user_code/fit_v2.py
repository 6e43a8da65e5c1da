"""The SageMaker Python SDK v2's ``PyTorch`` estimator against the local stack, run by the SDK's own venv
(``.venv-sdk2``) as a notebook would: the user's ``train.py`` in its source directory, an AWS PyTorch training
image, ``fit()`` on two instances. Argument: a JSON object (bucket, data, image, role, name, source_dir);
prints a JSON report on the last line."""

import json
import sys
import time

import boto3
import sagemaker
from sagemaker.pytorch import PyTorch

args = json.loads(sys.argv[1])
session = sagemaker.Session(boto_session=boto3.Session(), default_bucket=args["bucket"])
estimator = PyTorch(entry_point="train.py", source_dir=args["source_dir"], image_uri=args["image"],
                    framework_version="2.3", py_version="py311", role=args["role"], instance_type="ml.m5.large",
                    instance_count=2, sagemaker_session=session, output_path=f"s3://{args['bucket']}/output",
                    hyperparameters={"epochs": 3, "learning-rate": 0.5},
                    metric_definitions=[{"Name": "train:loss", "Regex": r"train_loss=([0-9.]+);"}])
started = time.monotonic()
estimator.fit({"training": args["data"]}, job_name=args["name"], wait=True, logs="None")
fitted = time.monotonic() - started
print(json.dumps({"fit_to_completed_s": round(fitted, 2), "model_data": estimator.model_data}))
