"""Training jobs the emulator runs from their description (services/jobs/training.py, services/emulator/sagemaker_training.py):
on demand, managed spot interrupted and resumed from S3 checkpoints, spot started over, two hosts, failure, stop.
The four training jobs run at once on one emulator process; each trains a few seconds on generated data."""

import io
import os
import subprocess
import tarfile
import time

import boto3
import pytest
import torch

from dogops.promote.config import load_stage
from dogops.promote.train import training_job_request
from dogops.s3upload import upload_dir
from dogops.synthetic import generate
from training.metrics import metric_definitions

from ..conftest import FAST
from .processes import Process, client

BUCKET = "dogops-training-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-training@sha256:" + "b" * 64
ROLE = "arn:aws:iam::123456789012:role/dogops-dev-training"
# Without the feature cache every epoch runs the backbone: slow enough to interrupt after epoch 2 of 4.
HP = {**FAST, "epochs": "4", "batch_size": "16", "patience": "0", "feature_cache": "false"}
ENDED = ("Completed", "Failed", "Stopped")


def _request(name: str, spot: bool = False, instances: int = 1, hyperparameters: dict = HP) -> dict:
    return training_job_request(name, load_stage("dev"), IMAGE, ROLE, f"s3://{BUCKET}/data",
                                f"s3://{BUCKET}/training", f"s3://{BUCKET}/checkpoints", hyperparameters,
                                "ml.m5.xlarge", instances, spot, max_run_s=3600, max_wait_s=7200)


def _wait(sm, name: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in ENDED:
            return job
        time.sleep(0.5)
    raise AssertionError(f"{name} still {job['TrainingJobStatus']} / {job['SecondaryStatus']}")


def _model(s3, job: dict) -> dict[str, bytes]:
    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"][5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _weights(files: dict) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(files["model.pth"]), map_location="cpu", weights_only=True)


def _streams(logs, name: str) -> list[list[str]]:
    """Each log stream of the job (in creation order), as its lines."""
    group = "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [[e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"],
                                                          startFromHead=True)["events"]]
            for s in sorted(streams, key=lambda s: (s["logStreamName"].rsplit("-", 1)[1], s["logStreamName"]))]


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator that interrupts every spot job once, after its hosts log epoch 2; a small data set in its S3."""
    data_dir = tmp_path_factory.mktemp("small-data")
    generate(data_dir, classes=5, per_class=12, size=48, seed=0)
    server = Process("services.emulator", tmp_path_factory.mktemp("training-jobs"),
                     DOGOPS_SPOT_INTERRUPT="epoch=2", DOGOPS_SPOT_CAPACITY_WAIT_S="1")
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    upload_dir(data_dir, f"s3://{BUCKET}/data", client=s3)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def jobs(aws) -> dict[str, dict]:
    """On demand, spot resumed, spot started over (no checkpoints), two hosts: created at once, run to the end."""
    sm = client("sagemaker", aws)
    started_over = _request("started-over", spot=True)
    del started_over["CheckpointConfig"]
    requests = {"on-demand": _request("on-demand"), "spot": _request("spot", spot=True),
                "started-over": started_over, "two-hosts": _request("two-hosts", instances=2)}
    for request in requests.values():
        sm.create_training_job(**request)
    created = sm.describe_training_job(TrainingJobName="on-demand")
    jobs = {name: _wait(sm, name) for name in requests}
    jobs["on-demand-as-created"] = created
    return jobs


@pytest.mark.slow
def test_a_created_job_is_in_progress_keeps_its_request_and_names_are_unique(aws, jobs):
    created = jobs["on-demand-as-created"]
    assert created["TrainingJobStatus"] == "InProgress" and created["SecondaryStatus"] in ("Starting", "Downloading")
    assert created["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()  # not moto's own
    assert created["HyperParameters"] == HP
    sm = client("sagemaker", aws)
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_training_job(**_request("on-demand"))


@pytest.mark.slow
def test_the_job_runs_to_completed_with_its_model_in_s3(aws, jobs):
    job = jobs["on-demand"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/training/on-demand/output/model.tar.gz"
    assert 1 <= job["BillableTimeInSeconds"] <= job["TrainingTimeInSeconds"]
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(metrics) == {d["Name"] for d in metric_definitions()} and metrics["test_accuracy"] >= 0.6
    files = _model(client("s3", aws), job)
    assert set(files) == {"model.pth", "classes.json", "model_config.json", "metrics.json", "manifest.json"}
    lines = _streams(client("logs", aws), "on-demand")
    assert len(lines) == 1 and any("epoch=4 " in line for line in lines[0])


@pytest.mark.slow
def test_an_interrupted_spot_job_resumes_from_its_checkpoint_to_the_same_model(aws, jobs):
    job, reference = jobs["spot"], jobs["on-demand"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading", "Training",
                        "Uploading", "Completed"]
    first, second = _streams(client("logs", aws), "spot")
    assert any("checkpoint saved" in line for line in first)
    assert any("resuming from checkpoint" in line for line in second)
    assert not any("epoch=1 " in line for line in second)
    checkpoints = client("s3", aws).list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/spot/")["Contents"]
    assert [c["Key"] for c in checkpoints] == ["checkpoints/spot/checkpoint.pt"]
    got, want = _model(client("s3", aws), job), _model(client("s3", aws), reference)
    assert got["metrics.json"] == want["metrics.json"]
    assert all(torch.equal(v, _weights(want)[k]) for k, v in _weights(got).items())
    assert job["TrainingTimeInSeconds"] > job["BillableTimeInSeconds"]  # the wait for capacity is not billed


@pytest.mark.slow
def test_a_spot_job_without_checkpoints_starts_over(aws, jobs):
    job = jobs["started-over"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    first, second = _streams(client("logs", aws), "started-over")
    assert any("epoch=2 " in line for line in first) and any("epoch=1 " in line for line in second)
    assert _model(client("s3", aws), job)["metrics.json"] == _model(client("s3", aws), jobs["on-demand"])[
        "metrics.json"]


@pytest.mark.slow
def test_two_hosts_train_data_parallel_and_agree_with_one(aws, jobs):
    job = jobs["two-hosts"]
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    algo1, algo2 = _streams(client("logs", aws), "two-hosts")
    assert any("2-host gloo group" in line for line in algo1)
    digests = [line.split("result_digest=")[1] for line in algo1 + algo2 if "result_digest=" in line]
    assert len(digests) == 2 and digests[0] == digests[1]
    got, want = _weights(_model(client("s3", aws), job)), _weights(_model(client("s3", aws), jobs["on-demand"]))
    difference = max((got[k] - want[k]).abs().max().item() for k in want)
    assert difference < 1e-4, difference
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    reference = {m["MetricName"]: m["Value"] for m in jobs["on-demand"]["FinalMetricDataList"]}
    assert metrics["test_accuracy"] == reference["test_accuracy"]
    assert metrics["test_loss"] == pytest.approx(reference["test_loss"], abs=1e-4)


def test_a_failing_job_is_failed_with_the_reason_it_wrote(aws):
    sm = client("sagemaker", aws)
    request = _request("failing")
    request["HyperParameters"]["learning-rat"] = "0.1"
    sm.create_training_job(**request)
    job = _wait(sm, "failing")
    assert job["TrainingJobStatus"] == "Failed" and job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ") and "unknown hyperparameter" in job["FailureReason"]


def test_stop_training_job_stops_it(aws):
    sm = client("sagemaker", aws)
    sm.create_training_job(**_request("stopped", hyperparameters={**HP, "epochs": "200"}))
    deadline = time.monotonic() + 300
    while sm.describe_training_job(TrainingJobName="stopped")["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    sm.stop_training_job(TrainingJobName="stopped")
    job = _wait(sm, "stopped")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")


def _docker_works() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_docker = pytest.mark.skipif(os.environ.get("DOGOPS_TEST_IMAGES") != "1" or not _docker_works(),
                                  reason="runs the training image: needs Docker and dogops-training:dev "
                                         "(DOGOPS_TEST_IMAGES=1, make test-images)")


@needs_docker
def test_a_job_left_to_the_host_runs_there_in_its_image(tmp_path, monkeypatch):
    """Compose's emulator (DOGOPS_TRAINING_RUNNER=host) leaves the job; the host claims it once and runs the
    described image (docker mode), reporting on the emulator's job."""
    from services.jobs.training import run_on_host
    from services.stack import settings

    data_dir = tmp_path / "data"
    generate(data_dir, classes=5, per_class=12, size=48, seed=0)
    server = Process("services.emulator", tmp_path, DOGOPS_TRAINING_RUNNER="host")
    try:
        for key, value in {**settings.emulator_env(), "AWS_ENDPOINT_URL": server.url}.items():
            monkeypatch.setenv(key, value)
        s3, sm = client("s3", server.url), client("sagemaker", server.url)
        s3.create_bucket(Bucket=BUCKET)
        upload_dir(data_dir, f"s3://{BUCKET}/data", client=s3)
        request = _request("in-the-image", hyperparameters={**HP, "epochs": "2"})
        request["AlgorithmSpecification"]["TrainingImage"] = "dogops-training:dev"
        sm.create_training_job(**request)
        time.sleep(1)
        assert sm.describe_training_job(TrainingJobName="in-the-image")["SecondaryStatus"] == "Starting"
        session = boto3.Session(region_name=settings.REGION)
        assert run_on_host(session, "in-the-image") and not run_on_host(session, "in-the-image")
        job = _wait(sm, "in-the-image")
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
            "Starting", "Downloading", "Training", "Uploading", "Completed"]
        files = _model(s3, job)
        assert set(files) >= {"model.pth", "classes.json", "metrics.json"}
        assert {m["MetricName"] for m in job["FinalMetricDataList"]} == {d["Name"] for d in metric_definitions()}
        (lines,) = _streams(client("logs", server.url), "in-the-image")
        assert any("epoch=2 " in line for line in lines)
    finally:
        server.stop()
