"""``dogops promote tune``: the CreateHyperParameterTuningJob request (botocore's model; warm start, spot), and the
whole command against an emulator that runs the tuning job with the local tuner, each trial a training job (a few
seconds each on generated data)."""

import io
import json
import tarfile

import pytest
import yaml

from dogops.cli import build_parser
from dogops.promote.config import load_stage
from dogops.promote.runs import settings
from dogops.promote.tune import tune_request, tuning_job_name
from dogops.s3upload import upload_dir
from dogops.synthetic import generate
from dogops.tuning.spec import load_spec, parse_spec

from ..services.processes import client, emulator
from .test_train import BUCKET, CHECKPOINTS, DATA, IMAGE, OUTPUT, aws  # noqa: F401 (aws: the emulator, the data)

ROLE = "arn:aws:iam::123456789012:role/dogops-dev-training"
SPEC = {"Strategy": "Random", "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2}, "RandomSeed": 1,
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]},
        "StaticHyperParameters": {"epochs": "1", "batch_size": "16", "image_size": "48"}}
HP = {"backbone": "efficientnet_lite0", "image_size": "64", "seed": "0", "learning_rate": "0.003",
      "feature_cache": "false"}


def _conf() -> dict:
    return {**settings("dev"), "data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS, "hyperparameters": HP}


def test_the_request_is_what_sagemaker_takes():
    name = tuning_job_name(load_stage("dev"))
    assert len(name) <= 32
    request = tune_request(parse_spec(SPEC), name, load_stage("dev"), IMAGE, ROLE, _conf(), spot=True,
                           warm_start=("dogops-dev-parent",))
    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE and definition["RoleArn"] == ROLE
    assert definition["StaticHyperParameters"] == {"backbone": "efficientnet_lite0", "image_size": "48", "seed": "0",
                                                   "feature_cache": "false", "epochs": "1", "batch_size": "16"}
    assert definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == DATA
    assert definition["EnableManagedSpotTraining"] and definition["CheckpointConfig"]["S3Uri"] == f"{CHECKPOINTS}/{name}"
    assert definition["StoppingCondition"]["MaxWaitTimeInSeconds"] >= definition["StoppingCondition"][
        "MaxRuntimeInSeconds"]
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "test_loss"}
    assert config["ParameterRanges"]["ContinuousParameterRanges"][0]["Name"] == "learning_rate"
    assert request["WarmStartConfig"] == {"ParentHyperParameterTuningJobs": [
        {"HyperParameterTuningJobName": "dogops-dev-parent"}], "WarmStartType": "IdenticalDataAndAlgorithm"}
    assert {t["Key"] for t in request["Tags"]} == {"project", "stage", "expires-at"}
    assert "WarmStartConfig" not in tune_request(load_spec(), name, load_stage("dev"), IMAGE, ROLE, _conf())


@pytest.mark.parametrize("changes, error", [
    ({"name": "x" * 33}, "HyperParameterTuningJobName"),
    ({"warm_start": tuple(f"parent-{i}" for i in range(6))}, "at most 5"),
    ({"warm_start": ("parent",), "warm_start_type": "Sideways"}, "WarmStartType"),
    ({"image": "dogops-training:dev"}, "by digest"),
])
def test_what_sagemaker_would_reject_is_refused_before_sending(changes, error):
    arguments = dict(spec=parse_spec(SPEC), name="dogops-dev-tune", stage=load_stage("dev"), image=IMAGE,
                     role_arn=ROLE, conf=_conf())
    with pytest.raises(ValueError, match=error):
        tune_request(**{**arguments, **changes})


def test_promote_tune_runs_the_trials_as_training_jobs_and_records_the_best(session, tmp_path):
    config = yaml.safe_load(open("promote.yaml"))
    config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS, "hyperparameters": HP}
    path, spec = tmp_path / "promote.yaml", tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(config))
    spec.write_text(yaml.safe_dump(SPEC))
    best = tmp_path / ".dogops" / "best.json"
    args = build_parser().parse_args(["promote", "tune", "--stage", "dev", "--config", str(path), "--spec", str(spec),
                                      "--image", IMAGE, "--name", "dogops-dev-tune", "--poll", "0.5", "--best",
                                      str(best)])
    lines = []
    record = args.func(args, echo=lines.append)
    text = "\n".join(lines)
    for expected in ("tuning job dogops-dev-tune: Random, minimize test_loss, 2 training jobs, 2 at once",
                     "status: InProgress", "status: Completed", "training jobs: Completed 2",
                     "trial dogops-dev-tune-001-", "trial dogops-dev-tune-002-", "best: dogops-dev-tune-00"):
        assert expected in text, (expected, text)
    sm = session.client("sagemaker")
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="dogops-dev-tune")
    assert job["TrainingJobStatusCounters"]["Completed"] == 2 and job["ObjectiveStatusCounters"]["Succeeded"] == 2
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="dogops-dev-tune")["TrainingJobSummaries"]
    values = {t["TrainingJobName"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials}
    assert len(values) == 2 and record["trial"] == min(values, key=values.get) == job["BestTrainingJob"][
        "TrainingJobName"]
    for trial in trials:
        training = sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert training["TuningJobArn"] == job["HyperParameterTuningJobArn"]
        assert training["HyperParameters"]["_tuning_objective_metric"] == "test_loss"
        assert training["HyperParameters"]["learning_rate"] == trial["TunedHyperParameters"]["learning_rate"]
        assert training["HyperParameters"]["epochs"] == "1" and training["RoleArn"].endswith("/dogops-dev-training")
    assert len({t["TunedHyperParameters"]["learning_rate"] for t in trials}) == 2
    assert json.loads(best.read_text()) == record
    assert record["model_data_url"] == f"{OUTPUT}/{record['trial']}/output/model.tar.gz"
    assert record["objective"] == {"name": "test_loss", "value": values[record["trial"]]}
    bucket, key = record["model_data_url"][5:].split("/", 1)
    body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        metrics = json.load(tar.extractfile("metrics.json"))
    assert metrics["test_loss"] == pytest.approx(values[record["trial"]], abs=1e-5)
    assert metrics["hyperparameters"]["learning_rate"] == record["tuned"]["learning_rate"]


@pytest.mark.slow
def test_where_the_emulator_leaves_jobs_to_the_host_promote_tune_runs_them_here(tmp_path, monkeypatch):
    """Compose's emulator (DOGOPS_TRAINING_RUNNER=host) runs nothing: the command claims the tuning job and runs it
    here, each trial claimed too (natively here, to stay quick; in compose they run in the image)."""
    from services.stack import settings as stack_settings

    data = tmp_path / "data"
    generate(data, classes=5, per_class=12, size=48, seed=0)
    server = emulator(tmp_path, DOGOPS_TRAINING_RUNNER="host")
    try:
        for key, value in {**stack_settings.emulator_env(), "AWS_ENDPOINT_URL": server.url,
                           "DOGOPS_TRAINING_MODE": "native", "DOGOPS_TUNING_DIR": str(tmp_path / "jobs")}.items():
            monkeypatch.setenv(key, value)
        s3 = client("s3", server.url)
        s3.create_bucket(Bucket=BUCKET)
        upload_dir(data, DATA, client=s3)
        config = yaml.safe_load(open("promote.yaml"))
        config["training"] = {"data": DATA, "output": OUTPUT, "checkpoints": CHECKPOINTS, "hyperparameters": HP}
        path, spec = tmp_path / "promote.yaml", tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(config))
        spec.write_text(yaml.safe_dump({**SPEC, "ResourceLimits": {"MaxNumberOfTrainingJobs": 1,
                                                                   "MaxParallelTrainingJobs": 1}}))
        args = build_parser().parse_args(["promote", "tune", "--stage", "dev", "--config", str(path), "--spec",
                                          str(spec), "--image", IMAGE, "--name", "on-the-host", "--poll", "0.5",
                                          "--best", str(tmp_path / "best.json")])
        lines = []
        record = args.func(args, echo=lines.append)
        assert any("leaves jobs to the host: running on-the-host here" in line for line in lines), lines
        assert record["trial"].startswith("on-the-host-001-") and (tmp_path / "jobs" / "on-the-host" / "results.csv"
                                                                   ).exists()
        job = client("sagemaker", server.url).describe_training_job(TrainingJobName=record["trial"])
        assert job["TrainingJobStatus"] == "Completed" and job["TuningJobArn"].endswith(":hyper-parameter-tuning-job/on-the-host")
    finally:
        server.stop()
