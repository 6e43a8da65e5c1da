"""Run by an SDK venv's Python (not by pytest) with `dogops env`'s environment: the SageMaker Python SDK's own
defaults, resolved as a notebook would (no bucket, no role given); prints them as one JSON line.

    python sdk_probe.py 2|3
"""

import json
import sys

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker"


def v2() -> dict:
    import sagemaker
    from sagemaker.model import Model
    from sagemaker.pytorch import PyTorch

    session = sagemaker.Session()
    bucket = session.default_bucket()
    estimator = PyTorch(entry_point="train.py", framework_version="2.5.1", py_version="py311", instance_count=1,
                        instance_type="ml.m5.large")
    model = Model(image_uri=IMAGE, model_data=f"s3://{bucket}/model.tar.gz")
    return {"version": sagemaker.__version__, "bucket": bucket, "training_role": estimator.role,
            "model_role": model.role}


def v3() -> dict:
    from importlib.metadata import version

    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer

    bucket = Session().default_bucket()
    trainer = ModelTrainer(training_image=IMAGE)
    return {"version": version("sagemaker"), "bucket": bucket, "training_role": trainer.role}


if __name__ == "__main__":
    print(json.dumps(v2() if sys.argv[1] == "2" else v3()))
