"""Training on AWS, rehearsed on the compose stack: the training image the suite tested, pushed to the stack's
registry through ECR and named by digest, as a SageMaker training job with managed spot (interrupted midway and
resumed from its S3 checkpoint), as a job of two instances training data-parallel, and as a tuning job; each is
created on the emulator's SageMaker API and run by the local stack from its description, in that image, so the
model lands in the emulator's S3 as it would in AWS's. Then on an EC2 spot instance: its user data run here.

The commands run in a scratch folder (their records, ``.dogops/candidate.json`` and ``.dogops/best.json``, land
there, not in the repository) with a copy of ``promote.yaml`` trained for fewer epochs.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .conftest import client
from .stacks import BIN, ROOT

STAGE = "dev"
EPOCHS = 4
RUN = time.strftime("%H%M%S")  # job names are unique in an account, for good
SPOT, DDP = f"rehearsal-spot-{RUN}", f"rehearsal-ddp-{RUN}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch folder holding ``promote.yaml`` with ``EPOCHS`` epochs."""
    folder = tmp_path_factory.mktemp("training")
    config = yaml.safe_load((ROOT / "promote.yaml").read_text())
    config["training"]["hyperparameters"]["epochs"] = EPOCHS
    (folder / "promote.yaml").write_text(yaml.safe_dump(config))
    return folder


def dogops(stack_env, workdir: Path, *args: str, **env: str) -> str:
    """Run the ``dogops`` command line in ``workdir``, configured as ``eval "$(dogops env)"`` does; its output."""
    started = time.monotonic()
    result = subprocess.run([str(BIN / "dogops"), *args], cwd=workdir, env={**os.environ, **stack_env, **env},
                            capture_output=True, text=True, timeout=900)
    print(f"dogops {' '.join(args[:2])}: {time.monotonic() - started:.1f} s\n{result.stdout}\n{result.stderr}")
    assert result.returncode == 0, f"dogops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image(stack_env, workdir, tested_images) -> str:
    """``dogops-training:dev`` pushed to the stack's ECR, by digest."""
    args = ["promote", "push", "dogops-training:dev", "--stage", STAGE]
    return dogops(stack_env, ROOT, *args, *([] if tested_images else ["--force"])).strip().splitlines()[-1]


def _job(session, stack_env, name: str) -> dict:
    return client(session, stack_env, "sagemaker").describe_training_job(TrainingJobName=name)


def _log(session, stack_env, job: str) -> str:
    logs = client(session, stack_env, "logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job)
    return "\n".join(e["message"] for s in streams["logStreams"] for e in logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=s["logStreamName"], startFromHead=True)["events"])


def _model_in_s3(session, stack_env, job: dict) -> int:
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").partition("/")
    return client(session, stack_env, "s3").head_object(Bucket=bucket, Key=key)["ContentLength"]


def test_a_spot_job_is_interrupted_and_resumes_from_its_checkpoint(session, stack_env, workdir, image):
    out = dogops(stack_env, workdir, "promote", "train", "--stage", STAGE, "--image", image, "--spot",
                 "--name", SPOT, DOGOPS_SPOT_INTERRUPT="epoch=2")
    job = _job(session, stack_env, SPOT)
    assert job["TrainingJobStatus"] == "Completed", out
    assert job["AlgorithmSpecification"]["TrainingImage"] == image and job["EnableManagedSpotTraining"]
    assert job["BillableTimeInSeconds"] >= 1 and _model_in_s3(session, stack_env, job) > 0
    assert "resuming from checkpoint" in _log(session, stack_env, SPOT)
    candidate = json.loads((workdir / ".dogops" / "candidate.json").read_text())
    assert candidate["model_data_url"] == job["ModelArtifacts"]["S3ModelArtifacts"]


def test_two_instances_train_one_model_data_parallel(session, stack_env, workdir, image):
    dogops(stack_env, workdir, "promote", "train", "--stage", STAGE, "--image", image, "--instances", "2",
           "--name", DDP)
    job = _job(session, stack_env, DDP)
    assert job["TrainingJobStatus"] == "Completed" and job["ResourceConfig"]["InstanceCount"] == 2
    assert _model_in_s3(session, stack_env, job) > 0
    streams = client(session, stack_env, "logs").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=DDP)["logStreams"]
    assert len(streams) == 2  # one per host, as SageMaker names them


def test_a_tuning_job_runs_its_trials_and_records_the_best(session, stack_env, workdir, image):
    spec = workdir / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "Strategy": "Random", "RandomSeed": 0,
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]},
        "StaticHyperParameters": {"epochs": "2"}}))
    dogops(stack_env, workdir, "promote", "tune", "--stage", STAGE, "--image", image, "--spec", str(spec))
    sagemaker = client(session, stack_env, "sagemaker")
    newest = max(sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"],
                 key=lambda job: job["CreationTime"])
    assert newest["HyperParameterTuningJobStatus"] == "Completed"
    described = sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=newest["HyperParameterTuningJobName"])
    assert described["TrainingJobStatusCounters"]["Completed"] == 2
    best = json.loads((workdir / ".dogops" / "best.json").read_text())
    job = _job(session, stack_env, described["BestTrainingJob"]["TrainingJobName"])
    assert best["model_data_url"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert _model_in_s3(session, stack_env, job) > 0


def test_an_ec2_spot_instance_pulls_trains_and_resumes_after_the_notice(session, stack_env, workdir, image):
    """The EC2 path's user data, run here against the stack as the instance would run it: ECR login, the image
    pulled by digest, ``docker run IMAGE train``; the spot notice after epoch 2, a second instance resuming."""
    job = f"rehearsal-ec2-{RUN}"
    # Without the feature cache every epoch runs the backbone (seconds each): the notice, posted once the shipped
    # log shows epoch 2, lands while there are epochs left to interrupt.
    config = yaml.safe_load((workdir / "promote.yaml").read_text())
    config["training"]["hyperparameters"].update(epochs=8, feature_cache="false")
    (workdir / "ec2.yaml").write_text(yaml.safe_dump(config))
    out = dogops(stack_env, workdir, "promote", "train", "--stage", STAGE, "--config", "ec2.yaml", "--image", image,
                 "--ec2", "--name", job, "--ami", "ami-12c6146b", DOGOPS_EC2_DOCKER="docker",
                 DOGOPS_SPOT_INTERRUPT="epoch=2", DOGOPS_SYNC_S="2")
    for expected in ("spot interruption notice", "(attempt 2, powers off after ", "resuming from checkpoint", "model uploaded to",
                     "recorded as the dev candidate"):
        assert expected in out, expected
    assert "REHEARSAL: `train` on the host" not in out  # the image ran, not a stand-in
    candidate = json.loads((workdir / ".dogops" / "candidate.json").read_text())
    bucket, _, key = candidate["model_data_url"].removeprefix("s3://").partition("/")
    assert client(session, stack_env, "s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_destroy_leaves_nothing_of_training(session, stack_env, workdir, image):
    out = dogops(stack_env, workdir, "destroy", "--stage", STAGE, "--images")
    assert f"stack dogops-{STAGE}-training: deleted" in out and "nothing tagged" in out
    roles = client(session, stack_env, "iam").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith(f"dogops-{STAGE}-")]
