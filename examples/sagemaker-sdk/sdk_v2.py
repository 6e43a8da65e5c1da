# %% [markdown]
# # Shapes on the dogops stack with the SageMaker Python SDK v2
# The workflow of a SageMaker project as its notebook keeps it: data to S3, a PyTorch estimator on our own
# `code/train.py` (1 and 2 instances), a hyperparameter tuning job, the best model deployed with our own
# `code/inference.py`, predictions, and cleanup. Nothing here names the local stack: run it after
# `eval "$(dogops env)"` (the SDK then finds the stack's bucket and execution role in its configuration),
# or on AWS as it is. `report` collects what each step saw, and how long it took.

# %% tags=["setup"]
import json
import os
import time
from pathlib import Path

import boto3
import sagemaker
from sagemaker.deserializers import JSONDeserializer
from sagemaker.pytorch import PyTorch, PyTorchModel
from sagemaker.s3 import S3Downloader
from sagemaker.serializers import IdentitySerializer, JSONSerializer
from sagemaker.tuner import ContinuousParameter, HyperparameterTuner
from shapes_data import make_dataset

session = sagemaker.Session()
bucket = session.default_bucket()
prefix = f"s3://{bucket}/shapes-example-v2"
run = time.strftime("%H%M%S")
report = {"bucket": bucket, "seconds": {}}
clock = time.monotonic()


def took(step):
    global clock
    report["seconds"][step] = round(time.monotonic() - clock, 1)
    print(f"{step}: {report['seconds'][step]} s")
    clock = time.monotonic()


make_dataset("data")
took("setup")

# %% tags=["upload"]
data = session.upload_data("data", key_prefix="shapes-example-v2/data")
channels = {"training": f"{data}/train", "validation": f"{data}/validation"}
report["data"] = data
report["uploaded"] = len(session.list_s3_files(bucket, "shapes-example-v2/data/"))
took("upload")

# %% tags=["fit"]
metrics = [{"Name": "val_loss", "Regex": r"val_loss=([0-9.]+)"},
           {"Name": "val_accuracy", "Regex": r"val_accuracy=([0-9.]+)"}]
estimator = PyTorch(entry_point="train.py", source_dir="code", framework_version="2.5.1", py_version="py311",
                    instance_count=1, instance_type="ml.m5.large", hyperparameters={"epochs": 5, "lr": 0.01},
                    metric_definitions=metrics, output_path=f"{prefix}/output", code_location=f"{prefix}/code",
                    base_job_name=f"shapes-{run}")
estimator.fit(channels)
description = estimator.latest_training_job.describe()
report["fit"] = {"job": description["TrainingJobName"], "status": description["TrainingJobStatus"],
                 "model_data": estimator.model_data, "metrics": description.get("FinalMetricDataList", [])}
took("fit")

# %% tags=["fit2"]
estimator2 = PyTorch(entry_point="train.py", source_dir="code", framework_version="2.5.1", py_version="py311",
                     instance_count=2, instance_type="ml.m5.large", hyperparameters={"epochs": 5, "lr": 0.01},
                     metric_definitions=metrics, output_path=f"{prefix}/output", code_location=f"{prefix}/code",
                     base_job_name=f"shapes2-{run}")
estimator2.fit(channels)
description = estimator2.latest_training_job.describe()
report["fit2"] = {"job": description["TrainingJobName"], "status": description["TrainingJobStatus"],
                  "instances": description["ResourceConfig"]["InstanceCount"],
                  "model_data": estimator2.model_data}
took("fit2")

# %% tags=["tune"]
tuner = HyperparameterTuner(estimator, "val_loss", {"lr": ContinuousParameter(0.003, 0.03)}, metrics,
                            objective_type="Minimize", max_jobs=2, max_parallel_jobs=2, base_tuning_job_name=f"t-{run}")
tuner.fit(channels)
report["tune"] = {"job": tuner.latest_tuning_job.name,
                  "trials": tuner.analytics().dataframe().to_dict("records")}
took("tune")

# %% tags=["best"]
best = tuner.best_training_job()
best_estimator = tuner.best_estimator()
S3Downloader.download(best_estimator.model_data, "best-model")  # a copy of the model we deploy
report["best"] = {"job": best, "model_data": best_estimator.model_data}
took("best")

# %% tags=["deploy"]
model = PyTorchModel(model_data=best_estimator.model_data, entry_point="inference.py", source_dir="code",
                     framework_version="2.5.1", py_version="py311", code_location=f"{prefix}/code",
                     name=f"shapes-{run}")
predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=f"shapes-{run}",
                         serializer=IdentitySerializer("image/jpeg"), deserializer=JSONDeserializer())
report["deploy"] = {"endpoint": predictor.endpoint_name,
                    "status": session.sagemaker_client.describe_endpoint(
                        EndpointName=predictor.endpoint_name)["EndpointStatus"]}
took("deploy")

# %% tags=["predict"]
photo = Path("data/test/blue/000.jpg")
by_bytes = predictor.predict(photo.read_bytes())
url = os.environ.get("DOGOPS_SAMPLES_URL", "https://upload.wikimedia.org/wikipedia/commons") + "/dog.jpg"
predictor.serializer = JSONSerializer()
by_url = predictor.predict({"url": url})
report["predict"] = {"photo": str(photo), "by_bytes": by_bytes, "url": url, "by_url": by_url}
took("predict")

# %% tags=["cleanup"]
predictor.delete_model()
predictor.delete_endpoint()
bucket_ = boto3.resource("s3").Bucket(bucket)
bucket_.objects.filter(Prefix="shapes-example-v2/").delete()
sm = session.sagemaker_client
report["cleanup"] = {
    "objects_left": [o.key for o in bucket_.objects.filter(Prefix="shapes-example-v2/")],
    "endpoints_left": [e["EndpointName"] for e in sm.list_endpoints(NameContains=f"shapes-{run}")["Endpoints"]],
    "configs_left": [c["EndpointConfigName"] for c in sm.list_endpoint_configs(
        NameContains=f"shapes-{run}")["EndpointConfigs"]],
    "models_left": [m["ModelName"] for m in sm.list_models(NameContains=f"shapes-{run}")["Models"]]}
took("cleanup")

# %%
print(json.dumps(report, default=str))
