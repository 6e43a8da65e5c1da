"""The SageMaker Python SDK v2's HyperparameterTuner against the local stack, run by the SDK's own venv
(``.venv-sdk2``) as a notebook would: a ``PyTorch`` estimator (so the SDK adds its ``sagemaker_*`` hyperparameters,
JSON-quoted) tuned over two trials, then ``wait()``, ``best_training_job()``, ``best_estimator()`` and the analytics
dataframe. Argument: a JSON object (bucket, data, image, role, name); prints a JSON report on the last line."""

import json
import sys
import time
from pathlib import Path

import boto3
import sagemaker
from sagemaker.analytics import HyperparameterTuningJobAnalytics
from sagemaker.pytorch import PyTorch
from sagemaker.tuner import ContinuousParameter, HyperparameterTuner

args = json.loads(sys.argv[1])
session = sagemaker.Session(boto_session=boto3.Session(), default_bucket=args["bucket"])
metrics = [{"Name": "test_loss", "Regex": r"\btest_loss=([0-9.eE+-]+)"}]
estimator = PyTorch(entry_point="train_user.py", source_dir=str(Path(__file__).with_name("source")),
                    image_uri=args["image"], framework_version="2.3", py_version="py311", role=args["role"],
                    instance_type="ml.m5.large", instance_count=1, sagemaker_session=session,
                    output_path=f"s3://{args['bucket']}/output", metric_definitions=metrics,
                    hyperparameters=args["static"])
tuner = HyperparameterTuner(estimator, "test_loss", {"learning_rate": ContinuousParameter(0.001, 0.01, "Logarithmic")},
                            metrics, objective_type="Minimize", strategy="Random", max_jobs=2, max_parallel_jobs=2,
                            random_seed=1)
started = time.monotonic()
tuner.fit({"training": args["data"]}, job_name=args["name"], wait=False)
tuner.wait()
waited = time.monotonic() - started
best = tuner.best_training_job()
frame = HyperparameterTuningJobAnalytics(args["name"], sagemaker_session=session).dataframe()
report = {"fit_to_completed_s": round(waited, 1), "best": best, "best_model": tuner.best_estimator().model_data,
          "ranges": tuner.analytics().tuning_ranges,
          "rows": json.loads(frame.to_json(orient="records", date_format="iso"))}
print(json.dumps(report))
