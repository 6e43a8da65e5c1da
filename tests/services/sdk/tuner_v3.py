"""The SageMaker Python SDK v3's HyperparameterTuner against the local stack, run by the SDK's own venv
(``.venv-sdk3``) as a notebook would: a ``ModelTrainer`` with the user's ``SourceCode`` (the SDK adds
``sagemaker_program`` and ``sagemaker_submit_directory``, unquoted, and its ``sm_drivers`` channel) tuned over two
trials with ``tune()``, then ``best_training_job()`` and the analytics dataframe. Argument: a JSON object (bucket,
data, image, role, name, static); prints a JSON report on the last line."""

import json
import sys
import time
from pathlib import Path

from sagemaker.core.helper.session_helper import Session
from sagemaker.core.parameter import ContinuousParameter
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, OutputDataConfig, SourceCode
from sagemaker.train.tuner import HyperparameterTuner

args = json.loads(sys.argv[1])
session = Session(default_bucket=args["bucket"])
trainer = ModelTrainer(training_image=args["image"], role=args["role"], sagemaker_session=session,
                       source_code=SourceCode(source_dir=str(Path(__file__).with_name("source")),
                                              entry_script="train_user.py"),
                       compute=Compute(instance_type="ml.m5.large", instance_count=1),
                       output_data_config=OutputDataConfig(s3_output_path=f"s3://{args['bucket']}/output"),
                       hyperparameters=args["static"], base_job_name=args["name"])
metrics = [{"Name": "test_loss", "Regex": r"\btest_loss=([0-9.eE+-]+)"}]
tuner = HyperparameterTuner(trainer, "test_loss", {"learning_rate": ContinuousParameter(0.001, 0.01, "Logarithmic")},
                            metric_definitions=metrics, objective_type="Minimize", strategy="Random", max_jobs=2,
                            max_parallel_jobs=2, random_seed=1)
started = time.monotonic()
tuner.tune(inputs=[InputData(channel_name="training", data_source=args["data"])], job_name=args["name"], wait=True)
waited = time.monotonic() - started
frame = tuner.analytics().dataframe()
report = {"fit_to_completed_s": round(waited, 1), "best": tuner.best_training_job(),
          "ranges": tuner.analytics().tuning_ranges,
          "rows": json.loads(frame.to_json(orient="records", date_format="iso"))}
print(json.dumps(report))
