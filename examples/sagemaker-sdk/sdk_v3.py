# %% [markdown]
# # Shapes on the dogops stack with the SageMaker Python SDK v3
# The workflow of `sdk_v2.ipynb` in v3's terms: `ModelTrainer` runs our own `code/train.py` (1 and 2 instances),
# v3's `HyperparameterTuner` tunes it, and `ModelBuilder` deploys the best model with our own `code/inference.py`
# (v3 has no configuration default for a serving role: we pass the one training used). Every name starts with
# `shapes-example-v3`, so that cleanup finds it all. Run it after `eval "$(dogops env)"`, or on AWS as it is.

# %% tags=["setup"]
import json
import os
import time
from pathlib import Path

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.image_uris import retrieve
from sagemaker.core.parameter import ContinuousParameter
from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig, SourceCode
from sagemaker.serve import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.tuner import HyperparameterTuner
from shapes_data import make_dataset

session = Session()
bucket = session.default_bucket()
prefix = f"s3://{bucket}/shapes-example-v3"
run = time.strftime("%H%M%S")
image = retrieve("pytorch", session.boto_region_name, version="2.5.1", py_version="py311",
                 instance_type="ml.m5.large", image_scope="training")
report = {"bucket": bucket, "image": image, "seconds": {}}
clock = time.monotonic()


def took(step):
    global clock
    report["seconds"][step] = round(time.monotonic() - clock, 1)
    print(f"{step}: {report['seconds'][step]} s")
    clock = time.monotonic()


make_dataset("data")
took("setup")

# %% tags=["upload"]
data = session.upload_data("data", key_prefix="shapes-example-v3/data")
channels = [InputData(channel_name="training", data_source=f"{data}/train"),
            InputData(channel_name="validation", data_source=f"{data}/validation")]
report["data"] = data
report["uploaded"] = len(session.list_s3_files(bucket, "shapes-example-v3/data/"))
took("upload")


# %% tags=["fit"]
def trainer(instances: int, name: str) -> ModelTrainer:
    return ModelTrainer(training_image=image, source_code=SourceCode(source_dir="code", entry_script="train.py"),
                        compute=Compute(instance_type="ml.m5.large", instance_count=instances),
                        hyperparameters={"epochs": 5, "lr": 0.01}, base_job_name=name,
                        output_data_config=OutputDataConfig(s3_output_path=f"{prefix}/output"))


single = trainer(1, f"shapes-example-v3-1-{run}")
single.train(input_data_config=channels, wait=True, logs=True)
job = single._latest_training_job
report["fit"] = {"job": job.training_job_name, "status": job.training_job_status, "role": single.role,
                 "model_data": job.model_artifacts.s3_model_artifacts}
took("fit")

# %% tags=["fit2"]
double = trainer(2, f"shapes-example-v3-2-{run}")
double.train(input_data_config=channels, wait=True, logs=True)
job = double._latest_training_job
report["fit2"] = {"job": job.training_job_name, "status": job.training_job_status,
                  "instances": job.resource_config.instance_count}
took("fit2")

# %% tags=["tune"]
metrics = [{"Name": "val_loss", "Regex": r"val_loss=([0-9.]+)"}]
tuner = HyperparameterTuner(trainer(1, f"shapes-example-v3-t-{run}"), "val_loss", {"lr": ContinuousParameter(0.003, 0.03)},
                            metrics, objective_type="Minimize", max_jobs=2, max_parallel_jobs=2,
                            base_tuning_job_name=f"t3-{run}")
tuner.tune(inputs=channels, wait=True)
report["tune"] = {"job": tuner.latest_tuning_job.hyper_parameter_tuning_job_name,
                  "trials": tuner.analytics().dataframe().to_dict("records")}
took("tune")

# %% tags=["best"]
best = tuner.best_training_job()
best_model_data = session.sagemaker_client.describe_training_job(
    TrainingJobName=best)["ModelArtifacts"]["S3ModelArtifacts"]
session.download_data("best-model", bucket, best_model_data.split(f"{bucket}/", 1)[1])
report["best"] = {"job": best, "model_data": best_model_data}
took("best")

# %% tags=["deploy"]
inference_image = retrieve("pytorch", session.boto_region_name, version="2.5.1", py_version="py311",
                           instance_type="ml.m5.large", image_scope="inference")
builder = ModelBuilder(image_uri=inference_image, s3_model_data_url=best_model_data, role_arn=single.role,
                       source_code=SourceCode(source_dir="code", entry_script="inference.py"),
                       instance_type="ml.m5.large")
builder.build(model_name=f"shapes-example-v3-{run}")
endpoint = builder.deploy(endpoint_name=f"shapes-example-v3-{run}", initial_instance_count=1)
report["deploy"] = {"endpoint": endpoint.endpoint_name, "status": session.sagemaker_client.describe_endpoint(
    EndpointName=endpoint.endpoint_name)["EndpointStatus"]}
took("deploy")

# %% tags=["predict"]
photo = Path("data/test/blue/000.jpg")
by_bytes = endpoint.invoke(body=photo.read_bytes(), content_type="image/jpeg", accept="application/json")
url = os.environ.get("DOGOPS_SAMPLES_URL", "https://upload.wikimedia.org/wikipedia/commons") + "/dog.jpg"
by_url = endpoint.invoke(body=json.dumps({"url": url}), content_type="application/json", accept="application/json")
report["predict"] = {"photo": str(photo), "by_bytes": json.loads(by_bytes.body.read()), "url": url,
                     "by_url": json.loads(by_url.body.read())}
took("predict")

# %% tags=["cleanup"]
sm = session.sagemaker_client
config = sm.describe_endpoint(EndpointName=endpoint.endpoint_name)["EndpointConfigName"]
sm.delete_endpoint(EndpointName=endpoint.endpoint_name)
sm.delete_endpoint_config(EndpointConfigName=config)
sm.delete_model(ModelName=f"shapes-example-v3-{run}")
bucket_ = boto3.resource("s3").Bucket(bucket)  # the data, outputs, and code each trainer staged by its job name
bucket_.objects.filter(Prefix="shapes-example-v3").delete()
report["cleanup"] = {
    "objects_left": [o.key for o in bucket_.objects.filter(Prefix="shapes-example-v3")],
    "endpoints_left": [e["EndpointName"] for e in sm.list_endpoints(NameContains=f"v3-{run}")["Endpoints"]],
    "configs_left": [c["EndpointConfigName"] for c in sm.list_endpoint_configs(
        NameContains=f"v3-{run}")["EndpointConfigs"]],
    "models_left": [m["ModelName"] for m in sm.list_models(NameContains=f"v3-{run}")["Models"]]}
took("cleanup")

# %%
print(json.dumps(report, default=str))
