"""The SageMaker Python SDK v2 reading a training job's logs and metrics from the local stack, run by its own venv
(``.venv-sdk2``): ``fit(logs="All")`` (the SDK prints the job's CloudWatch log streams while it waits), then
``TrainingJobAnalytics`` (CloudWatch metrics of the job's metric definitions). Argument: a JSON object (bucket,
data, image, role, name); prints a JSON report on the last line."""

import json
import sys
from pathlib import Path

import boto3
import sagemaker
from sagemaker.analytics import TrainingJobAnalytics
from sagemaker.pytorch import PyTorch

args = json.loads(sys.argv[1])
session = sagemaker.Session(boto_session=boto3.Session(), default_bucket=args["bucket"])
estimator = PyTorch(entry_point="train_user.py", source_dir=str(Path(__file__).with_name("source")),
                    image_uri=args["image"], framework_version="2.3", py_version="py311", role=args["role"],
                    instance_type="ml.m5.large", instance_count=1, sagemaker_session=session,
                    output_path=f"s3://{args['bucket']}/output",
                    metric_definitions=[{"Name": "test_loss", "Regex": r"\btest_loss=([0-9.eE+-]+)"}],
                    hyperparameters={"learning_rate": 0.005, "epochs": 3})
estimator.fit({"training": args["data"]}, job_name=args["name"], wait=True, logs="All")
frame = TrainingJobAnalytics(args["name"], sagemaker_session=session).dataframe()
print(json.dumps({"rows": frame.to_dict(orient="records")}))
