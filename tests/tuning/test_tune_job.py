"""Real local tuning jobs: `dogops tune` running `train` trials on generated data."""

import json
import signal
import subprocess
from datetime import datetime

import boto3
import pytest
import yaml

from ..conftest import BIN, run_script, script_env


def _spec(tmp_path, **fields) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def _results(job_dir) -> list[dict]:
    return json.loads((job_dir / "results.json").read_text())


def test_parallel_grid_job_survives_failing_trials_and_deploys_the_best(data_dir, tmp_path, s3_env):
    spec = _spec(tmp_path, Strategy="Grid",
                 HyperParameterTuningJobObjective={"Type": "Minimize", "MetricName": "test_loss"},
                 ResourceLimits={"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
                 ParameterRanges={"CategoricalParameterRanges": [
                     {"Name": "backbone", "Values": ["efficientnet_lite0", "resnet18"]},
                     {"Name": "learning_rate", "Values": ["0.003", "0.01"]}]},
                 StaticHyperParameters={"epochs": "8", "image_size": "64", "batch_size": "32"})
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="tuning")
    # resnet18's ImageNet weights cannot be had here: those trials fail, and the job must go on.
    env = {**s3_env, "TORCH_HOME": str(tmp_path / "torch-home")}
    result = subprocess.run([str(BIN / "dogops"), "tune", "--data", str(data_dir), "--spec", spec, "--name", "grid",
                             "--output", "s3://tuning/jobs"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    job = tmp_path / "tuning-jobs" / "grid"
    rows = _results(job)
    assert len(rows) == 4 and "trial 4/4" in result.stderr
    failed = [r for r in rows if r["status"] == "Failed"]
    assert {r["backbone"] for r in failed} == {"resnet18"} and len(failed) == 2
    assert all(r["failure_reason"].startswith("WeightsUnavailable") for r in failed)
    completed = [r for r in rows if r["status"] == "Completed"]
    best_row = min(completed, key=lambda r: r["test_loss"])
    assert max(r["final_test_accuracy"] for r in completed) >= 0.9
    spans = sorted((datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["ended"])) for r in rows)
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:])), f"no two trials overlapped: {spans}"
    assert (job / "results.csv").read_text().count("\n") == 5 and (job / "objective.png").stat().st_size > 1000

    record = json.loads((tmp_path / ".dogops" / "best.json").read_text())
    assert record["trial"] == best_row["trial"] and record["hyperparameters"]["backbone"] == "efficientnet_lite0"
    assert record["model_data_url"] == f"s3://tuning/jobs/grid/{best_row['trial']}/output/model.tar.gz"
    assert abs(record["metrics"]["test_loss"] - best_row["test_loss"]) < 1e-6  # logs carry 6 decimals

    deployed = run_script("dogops", "deploy", "--record", tmp_path / ".dogops" / "best.json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    names = json.loads(deployed.stdout)
    sm = boto3.client("sagemaker", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    model = sm.describe_model(ModelName=names["model"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == record["model_data_url"]
    assert sm.describe_endpoint(EndpointName="dogops")["EndpointConfigName"] == names["endpoint_config"]


@pytest.mark.slow
def test_early_stopping_stops_an_obviously_bad_trial(data_dir, tmp_path):
    spec = _spec(tmp_path, Strategy="Random", RandomSeed=6, TrainingJobEarlyStoppingType="Auto",
                 HyperParameterTuningJobObjective={"Type": "Minimize", "MetricName": "valid_loss"},
                 ResourceLimits={"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 1},
                 ParameterRanges={"CategoricalParameterRanges": [
                     {"Name": "learning_rate", "Values": ["0.003", "0.0000001"]}]},
                 StaticHyperParameters={"epochs": "6", "patience": "0", "image_size": "64",
                                        "backbone": "efficientnet_lite0"})
    result = run_script("dogops", "tune", "--data", data_dir, "--spec", spec, "--name", "early", "--jobs-dir",
                        tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _results(tmp_path / "early")
    stopped = [r for r in rows if r["status"] == "Stopped"]
    assert stopped and all(r["learning_rate"] == "0.0000001" for r in stopped), rows
    for row in stopped:
        log = (tmp_path / "early" / "trials" / row["trial"] / "train.log").read_text()
        assert "epoch=6 " not in log and "received SIGTERM" in log


@pytest.mark.slow
def test_an_interrupted_job_resumes_without_repeating_finished_trials(data_dir, tmp_path):
    spec = _spec(tmp_path, Strategy="Random",
                 HyperParameterTuningJobObjective={"Type": "Maximize", "MetricName": "test_accuracy"},
                 ResourceLimits={"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
                 ParameterRanges={"ContinuousParameterRanges": [
                     {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01"}]},
                 StaticHyperParameters={"epochs": "4", "image_size": "64", "feature_cache": "false",
                                        "backbone": "efficientnet_lite0"})
    argv = [str(BIN / "dogops"), "tune", "--data", str(data_dir), "--spec", spec, "--name", "resume",
            "--jobs-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, env=script_env(), stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in proc.stderr:
        if "trial resume-001 started" in line:  # the first trial has ended, the second is running
            proc.send_signal(signal.SIGTERM)
            break
    proc.stderr.read()
    assert proc.wait(timeout=300) == 130
    first = _results(tmp_path / "resume")
    assert [r["status"] for r in first] == ["Completed", "Interrupted"]
    assert "final test_loss" not in (tmp_path / "resume" / "trials" / "resume-001" / "train.log").read_text()

    resumed = subprocess.run(argv, env=script_env(), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "1 trials ended, 2 to run" in resumed.stderr
    rows = _results(tmp_path / "resume")
    assert [r["status"] for r in rows].count("Completed") == 3
    assert rows[0] == first[0]
