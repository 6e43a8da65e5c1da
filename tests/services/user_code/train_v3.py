"""The SageMaker Python SDK v3's ``ModelTrainer`` against the local stack, run by the SDK's own venv
(``.venv-sdk3``): the user's ``train.py`` as ``SourceCode(entry_script=..., requirements=...)``, which v3 runs
through ``ContainerEntrypoint`` (``/bin/bash -c .../sm_drivers/sm_train.sh``) with its ``code`` and
``sm_drivers`` input channels. Argument: a JSON object (bucket, data, image, role, name, source_dir); prints
a JSON report on the last line."""

import json
import sys
import time

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, OutputDataConfig, SourceCode

args = json.loads(sys.argv[1])
session = Session(boto_session=boto3.Session(), default_bucket=args["bucket"])
trainer = ModelTrainer(training_image=args["image"], role=args["role"], sagemaker_session=session,
                       source_code=SourceCode(source_dir=args["source_dir"], entry_script="train.py",
                                              requirements="requirements.txt"),
                       compute=Compute(instance_type="ml.m5.large", instance_count=1),
                       hyperparameters={"epochs": 2, "learning-rate": 0.5}, base_job_name=args["name"],
                       output_data_config=OutputDataConfig(s3_output_path=f"s3://{args['bucket']}/output"))
started = time.monotonic()
trainer.train(input_data_config=[InputData(channel_name="training", data_source=args["data"])], wait=True,
              logs=False)
print(json.dumps({"train_to_completed_s": round(time.monotonic() - started, 2),
                  "job": trainer._latest_training_job.training_job_name}))
