"""The local tuner takes the tuning jobs the SageMaker SDK sends (issue 15, point 6), on a real emulator:

- ``CreateHyperParameterTuningJob`` as SDK v2 sends it (captured from ``HyperparameterTuner.fit`` and
  ``HyperparameterTuner.create`` against the emulator): ``HyperParameterTuningResourceConfig`` (an instance type or
  ``InstanceConfigs``), ``TrainingJobDefinitions``, the ``sagemaker_*`` static hyperparameters, each trial a training
  job with the definition's resources, hyperparameters as sent and its ``TunedHyperParameters``; the best trial, the
  counters and the paged trial list follow the trials' logged objective;
- a request SageMaker refuses is a 400 ``ValidationException`` naming the problem, never a 500;
- the SDKs themselves, each in its own venv (``make sdk-venvs``): v2's ``HyperparameterTuner`` over a ``PyTorch``
  estimator (``fit()``, ``wait()``, ``best_training_job()``, ``best_estimator()``) and v3's over a ``ModelTrainer``
  (``tune()``, ``best_training_job()``), each with the analytics dataframe (``slow``: 20-50 s each).
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dogops.s3upload import upload_dir
from dogops.synthetic import generate
from dogops.tuning.spec import sampler_and_pruner
from services.jobs.tuning_request import Completion, read
from services.stack import settings

from ..conftest import tarball
from ..sdk_venvs import sdk_python
from .processes import client, emulator

BUCKET = "sdk-tuning"
DATA = f"s3://{BUCKET}/data"
ROLE = "arn:aws:iam::123456789012:role/dogops-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-training:dev"
METRICS = [{"Name": "test_loss", "Regex": r"\btest_loss=([0-9.eE+-]+)"}]
# dogops' train, small and quick; JSON-quoted as SDK v2's framework estimators send every value
STATIC = {"epochs": "1", "batch_size": "16", "image_size": "48", "backbone": '"efficientnet_lite0"', "seed": "0",
          "feature_cache": "false"}
SDK_KEYS = {"sagemaker_submit_directory": f'"s3://{BUCKET}/cap/source/sourcedir.tar.gz"',
            "sagemaker_program": '"train_user.py"', "sagemaker_container_log_level": "20",
            "sagemaker_job_name": '"cap"', "sagemaker_region": '"us-east-1"',
            "sagemaker_estimator_class_name": '"PyTorch"', "sagemaker_estimator_module": '"sagemaker.pytorch.estimator"'}
RANGES = {"ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01",
                                         "ScalingType": "Auto"}],
          "CategoricalParameterRanges": [], "IntegerParameterRanges": []}
SOURCE = Path(__file__).with_name("sdk") / "source"  # the user's train_user.py


def user_loss(learning_rate: str, epochs: int = 1) -> float:
    """What train_user.py logs last for ``learning_rate``."""
    return round((math.log10(float(learning_rate)) + 2.5) ** 2 + 1 / epochs, 6)


def definition(**changes) -> dict:
    """A TrainingJobDefinition as SDK v2 sends it (HyperParameterTuningResourceConfig, never ResourceConfig)."""
    body = {"StaticHyperParameters": {**STATIC, **SDK_KEYS}, "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
            "HyperParameterTuningResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                   "VolumeSizeInGB": 30},
            "AlgorithmSpecification": {"TrainingInputMode": "File", "MetricDefinitions": METRICS,
                                       "TrainingImage": IMAGE},
            "InputDataConfig": [{"DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": DATA, "S3DataDistributionType": "FullyReplicated"}},
                "ChannelName": "training"}]}
    body.update(changes)
    return body


def config(**changes) -> dict:
    body = {"Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2},
            "TrainingJobEarlyStoppingType": "Off", "RandomSeed": 1,
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
            "ParameterRanges": RANGES}
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An emulator that runs tuning jobs natively, with a bucket of generated data (5 breeds, 48 px); its URL and
    the folder of its tuning jobs' results."""
    logs = tmp_path_factory.mktemp("sdk-tuning")
    server = emulator(logs, DOGOPS_TUNING_DIR=logs / "tuning")
    data = tmp_path_factory.mktemp("sdk-tuning-data")
    generate(data, classes=5, per_class=12, size=48, seed=0)
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    upload_dir(data, DATA, client=s3)
    s3.put_object(Bucket=BUCKET, Key="cap/source/sourcedir.tar.gz", Body=tarball(SOURCE))  # as the SDK uploads it
    yield server.url, logs / "tuning"
    server.stop()


@pytest.fixture(scope="module")
def aws(stack) -> str:
    return stack[0]


def wait_for(sm, name: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if job["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"tuning job {name} still {job['HyperParameterTuningJobStatus']} after {timeout} s")


def objective(sm, trial: str) -> float:
    """The objective as the trial's own training job logged it (its FinalMetricDataList)."""
    metrics = sm.describe_training_job(TrainingJobName=trial)["FinalMetricDataList"]
    return next(m["Value"] for m in metrics if m["MetricName"] == "test_loss")


def test_the_sdk_multi_algorithm_form_runs_every_definition_with_its_resources_and_sdk_keys(aws):
    """HyperparameterTuner.create's request: two named definitions, one trial each: a PyTorch estimator's (the
    user's script, the SDK's keys, InstanceConfigs) and a generic estimator's (dogops' own train)."""
    sm = client("sagemaker", aws)
    first = definition(DefinitionName="wide", TuningObjective={"Type": "Minimize", "MetricName": "test_loss"},
                       HyperParameterRanges=RANGES, HyperParameterTuningResourceConfig={"InstanceConfigs": [
                           {"InstanceCount": 1, "InstanceType": "ml.c5.xlarge", "VolumeSizeInGB": 20},
                           {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}]})
    second = definition(DefinitionName="narrow", TuningObjective={"Type": "Minimize", "MetricName": "test_loss"},
                        HyperParameterRanges=RANGES, StaticHyperParameters={**STATIC, "hidden_units": "16"})
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="multi", TrainingJobDefinitions=[first, second],
        HyperParameterTuningJobConfig={"Strategy": "Random", "ResourceLimits": {
            "MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1}, "TrainingJobEarlyStoppingType": "Off"})
    job = wait_for(sm, "multi")
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert [d["DefinitionName"] for d in job["TrainingJobDefinitions"]] == ["wide", "narrow"]
    assert "TrainingJobDefinition" not in job
    assert job["TrainingJobStatusCounters"] == {"Completed": 2, "InProgress": 0, "RetryableError": 0,
                                                "NonRetryableError": 0, "Stopped": 0}
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 2, "Pending": 0, "Failed": 0}

    page = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="multi", MaxResults=1,
                                                               SortBy="CreationTime")
    rest = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="multi", MaxResults=1,
                                                               SortBy="CreationTime", NextToken=page["NextToken"])
    assert "NextToken" not in rest
    trials = page["TrainingJobSummaries"] + rest["TrainingJobSummaries"]
    assert [t["TrainingJobDefinitionName"] for t in trials] == ["wide", "narrow"]
    assert [t["TrainingJobName"][:10] for t in trials] == ["multi-001-", "multi-002-"]
    for trial, body in zip(trials, (first, second)):
        training = sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert training["TuningJobArn"] == job["HyperParameterTuningJobArn"]
        assert training["HyperParameters"] == {**body["StaticHyperParameters"], **trial["TunedHyperParameters"],
                                               "_tuning_objective_metric": "test_loss"}
        assert set(trial["TunedHyperParameters"]) == {"learning_rate"}
        assert training["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
        assert trial["ObjectiveStatus"] == "Succeeded"
        assert trial["FinalHyperParameterTuningJobObjectiveMetric"] == {
            "Type": "Minimize", "MetricName": "test_loss", "Value": objective(sm, trial["TrainingJobName"])}
    assert [sm.describe_training_job(TrainingJobName=t["TrainingJobName"])["ResourceConfig"] for t in trials] == [
        {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 20},  # the first of InstanceConfigs
        {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}]
    # the user's script ran the first, read by the user's metric definitions; dogops' train the second
    assert trials[0]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        user_loss(trials[0]["TunedHyperParameters"]["learning_rate"]), abs=1e-6)
    assert client("s3", aws).head_object(Bucket=BUCKET, Key=f"output/{trials[1]['TrainingJobName']}/output/model.tar.gz")
    best = min(trials, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    assert job["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    assert job["BestTrainingJob"]["TrainingJobDefinitionName"] == best["TrainingJobDefinitionName"]
    assert job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"] == best[
        "FinalHyperParameterTuningJobObjectiveMetric"]


@pytest.mark.parametrize("changes, sampler, pruner, jobs", [
    ({"Strategy": "Bayesian", "TrainingJobEarlyStoppingType": "Auto"}, "TPESampler", "MedianPruner", 2),
    ({"Strategy": "Random"}, "RandomSampler", "NopPruner", 2),
    ({"Strategy": "Hyperband", "StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 3}}},
     "TPESampler", "HyperbandPruner", 2),
    ({"Strategy": "Grid", "ResourceLimits": {"MaxParallelTrainingJobs": 1}, "ParameterRanges": {
        "CategoricalParameterRanges": [{"Name": "learning_rate", "Values": ["0.001", "0.01", "0.1"]}]}},
     "GridSampler", "NopPruner", 3),
])
def test_every_strategy_the_sdk_sends_is_searched_as_sagemaker_does(changes, sampler, pruner, jobs):
    [taken], _ = read({"HyperParameterTuningJobConfig": config(**changes), "TrainingJobDefinition": definition()})
    assert taken.spec.strategy == changes["Strategy"] and taken.spec.max_jobs == jobs
    assert [type(p).__name__ for p in sampler_and_pruner(taken.spec)] == [sampler, pruner]
    assert taken.spec.static == {**STATIC, **SDK_KEYS}  # passed on as sent, the SDK's keys included
    assert taken.resources == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}


def test_a_tuning_job_that_reaches_its_target_objective_starts_no_more_trials(aws):
    """TuningJobCompletionCriteria.TargetObjectiveMetricValue: the user's script's first trial meets it."""
    sm = client("sagemaker", aws)
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="target", TrainingJobDefinition=definition(), HyperParameterTuningJobConfig=config(
            ResourceLimits={"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 1},
            TuningJobCompletionCriteria={"TargetObjectiveMetricValue": 1.5}))  # every trial logs less than 1.3
    job = wait_for(sm, "target")
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TrainingJobStatusCounters"]["Completed"] == 1 and job["ObjectiveStatusCounters"]["Succeeded"] == 1
    assert job["TuningJobCompletionDetails"] == {"NumberOfTrainingJobsObjectiveNotImproving": 0}
    assert job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        user_loss(job["BestTrainingJob"]["TunedHyperParameters"]["learning_rate"]), abs=1e-6)


def test_a_warm_started_job_searches_from_its_parents_completed_trials(stack):
    """WarmStartConfig (the SDK's identical_dataset_and_algorithm_tuner()): the parent's trials seed the child's
    study (its journal holds them, with the parent's objective values); the child's own trials are its results."""
    url, tuning_dir = stack
    sm = client("sagemaker", url)
    sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName="parent", TrainingJobDefinition=definition(),
                                         HyperParameterTuningJobConfig=config())
    assert wait_for(sm, "parent")["HyperParameterTuningJobStatus"] == "Completed"
    parent = {t["TunedHyperParameters"]["learning_rate"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
              for t in sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="parent")[
                  "TrainingJobSummaries"]}
    assert len(parent) == 2
    with pytest.raises(ClientError, match="Could not find hyper parameter tuning job 'nobody'"):
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="orphan", TrainingJobDefinition=definition(), HyperParameterTuningJobConfig=
            config(), WarmStartConfig={"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "nobody"}],
                                       "WarmStartType": "IdenticalDataAndAlgorithm"})
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="child", TrainingJobDefinition=definition(), HyperParameterTuningJobConfig=config(
            Strategy="Bayesian", ResourceLimits={"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1}),
        WarmStartConfig={"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "parent"}],
                         "WarmStartType": "IdenticalDataAndAlgorithm"})
    job = wait_for(sm, "child")
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    [trial] = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="child")[
        "TrainingJobSummaries"]
    assert trial["TrainingJobName"].startswith("child-001-") and job["TrainingJobStatusCounters"]["Completed"] == 1

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="child", storage=JournalStorage(JournalFileBackend(
        str(tuning_dir / "child" / "study.journal"))))
    seeded = {repr(t.params["learning_rate"]): t.value for t in study.trials if t.user_attrs.get("warm_start")}
    assert seeded == pytest.approx(parent)
    rows = json.loads((tuning_dir / "child" / "results.json").read_text())
    assert [r["trial"] for r in rows] == [trial["TrainingJobName"]]


def test_a_stopped_tuning_job_stops_its_running_trial_and_starts_no_more(aws):
    """StopHyperParameterTuningJob (the SDK's tuner.stop_tuning_job()) while the first trial runs."""
    sm = client("sagemaker", aws)
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="stopped", TrainingJobDefinition=definition(), HyperParameterTuningJobConfig=config(
            ResourceLimits={"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 1}))
    deadline = time.monotonic() + 60
    while not sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")[
            "TrainingJobSummaries"]:
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.2)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
    assert sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")[
        "HyperParameterTuningJobStatus"] in ("Stopping", "Stopped")
    job = wait_for(sm, "stopped")
    assert job["HyperParameterTuningJobStatus"] == "Stopped" and "HyperParameterTuningEndTime" in job
    [trial] = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")[
        "TrainingJobSummaries"]
    assert trial["TrainingJobStatus"] in ("Stopped", "Completed")  # a trial as quick as the stop may finish first
    assert job["TrainingJobStatusCounters"][trial["TrainingJobStatus"]] == 1
    assert sum(job["TrainingJobStatusCounters"].values()) == 1
    print("the stopped job's trial:", trial["TrainingJobStatus"])
    assert sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])["TrainingJobStatus"] == trial[
        "TrainingJobStatus"]
    with pytest.raises(ClientError, match="in status Stopped"):
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")


@pytest.mark.parametrize("minimize, values, not_improving, reached", [
    (True, [1.0, 0.995, 0.999, 0.9999], 3, True),  # less than 1% better is no improvement, as AWS counts it
    (True, [1.0, 0.98, 0.99, 0.96, 0.97], 1, False),
    (False, [0.5, 0.6, 0.601, 0.7, 0.7, 0.69], 2, False),
    (False, [0.0, 0.0, 0.0, 0.1], 0, False),
])
def test_best_objective_not_improving_counts_trials_in_a_row_below_one_percent(minimize, values, not_improving,
                                                                                reached):
    criteria = Completion(minimize, patience=3)
    for value in values:
        criteria.record(value)
    assert (criteria.not_improving, criteria.reached) == (not_improving, reached)


def test_the_emulator_validates_without_the_tuners_libraries():
    """Compose's emulator image has the stack's lock only (no optuna, torch or matplotlib): validating a request at
    CreateHyperParameterTuningJob must not need them."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('optuna', 'torch', 'matplotlib'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import services.emulator.server\n"
            "from services.jobs.tuning_request import read\n"
            "print(read(__import__('json').loads(sys.argv[1]))[0][0].spec.strategy)\n")
    request = {"HyperParameterTuningJobConfig": config(), "TrainingJobDefinition": definition()}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(request)], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and result.stdout.strip() == "Random", result.stderr[-2000:]


def _refused(sm, code: str = "ValidationException", **request) -> str:
    with pytest.raises(ClientError) as caught:
        sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName="refused", **request)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400 and error["Error"]["Code"] == code
    return error["Error"]["Message"]


@pytest.mark.parametrize("request_, message", [
    ({"TrainingJobDefinition": definition(), "TrainingJobDefinitions": [definition(DefinitionName="a")]},
     "Exactly one of TrainingJobDefinition and TrainingJobDefinitions"),
    ({}, "Exactly one of TrainingJobDefinition and TrainingJobDefinitions"),
    ({"TrainingJobDefinition": definition(ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                                          "VolumeSizeInGB": 30})},
     "exactly one of ResourceConfig and HyperParameterTuningResourceConfig"),
    ({"TrainingJobDefinition": definition(HyperParameterTuningResourceConfig={
        "InstanceType": "ml.m5.large", "InstanceConfigs": [
            {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}]})},
     "InstanceConfigs cannot be specified together with InstanceType"),
    ({"TrainingJobDefinition": definition(HyperParameterTuningResourceConfig={"InstanceConfigs": [
        {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}] * 7})}, "1 to 6"),
    ({"TrainingJobDefinition": definition(HyperParameterTuningResourceConfig={"VolumeSizeInGB": 30})},
     "either InstanceConfigs or InstanceType and InstanceCount"),
    ({"TrainingJobDefinitions": [definition(DefinitionName="a", TuningObjective={
        "Type": "Minimize", "MetricName": "test_loss"}, HyperParameterRanges=RANGES)] * 2},
     "DefinitionName of its own"),
    ({"TrainingJobDefinitions": [
        definition(DefinitionName="a", TuningObjective={"Type": "Minimize", "MetricName": "test_loss"},
                   HyperParameterRanges=RANGES),
        definition(DefinitionName="b", TuningObjective={"Type": "Maximize", "MetricName": "test_loss"},
                   HyperParameterRanges=RANGES)], "config": {"HyperParameterTuningJobObjective": None}},
     "same Type"),
    ({"TrainingJobDefinition": definition(), "config": {"TuningJobCompletionCriteria": {
        "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}}}}, "ConvergenceDetected (CompleteOnConvergence "
                                                                          "Enabled) is not emulated"),
    ({"TrainingJobDefinition": definition(), "Autotune": {"Mode": "Enabled"}}, "Autotune is not emulated"),
    ({"TrainingJobDefinition": definition(), "config": {"Strategy": "Anneal"}}, "Strategy must be one of"),
    ({"TrainingJobDefinition": definition(), "config": {"Strategy": "Hyperband",
                                                        "TrainingJobEarlyStoppingType": "Auto"}},
     "Hyperband does its own early stopping"),
    ({"TrainingJobDefinition": definition(), "config": {"HyperParameterTuningJobObjective": {
        "Type": "Minimize", "MetricName": "val:acc"}}}, "objective metric 'val:acc' is not among"),
    ({"TrainingJobDefinition": definition(), "config": {"ParameterRanges": {"ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "0.1", "MaxValue": "0.01"}]}}}, "MinValue must be below MaxValue"),
    ({"TrainingJobDefinition": definition(), "config": {"ParameterRanges": {"IntegerParameterRanges": [
        {"Name": "epochs", "MinValue": "1", "MaxValue": "3"}]}}}, "epochs is both static and tuned"),
])
def test_what_sagemaker_refuses_is_a_400_validation_exception_naming_the_problem(aws, request_, message):
    request_ = dict(request_)
    changes = request_.pop("config", {})
    tuning = {k: v for k, v in config(**changes).items() if v is not None}
    assert message in _refused(client("sagemaker", aws), HyperParameterTuningJobConfig=tuning, **request_)


def test_a_malformed_request_from_a_client_that_does_not_validate_is_a_400(aws):
    sm = client("sagemaker", aws, parameter_validation=False)
    message = _refused(sm, "SerializationException", HyperParameterTuningJobConfig=config(),
                       TrainingJobDefinition=definition(HyperParameterTuningResourceConfig={"InstanceConfigs": [
                           {"InstanceType": "ml.m5.large", "InstanceCount": "one", "VolumeSizeInGB": 30}]}))
    assert "'one'" in message
    assert "MaxNumberOfTrainingJobs must be at least 1" in _refused(sm, TrainingJobDefinition=definition(),
                                                                   HyperParameterTuningJobConfig=config(
        ResourceLimits={"MaxNumberOfTrainingJobs": 0, "MaxParallelTrainingJobs": 1}))
    assert "must be at least 3" in _refused(sm, TrainingJobDefinition=definition(), HyperParameterTuningJobConfig=config(
        TuningJobCompletionCriteria={"BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 2}}))
    assert _refused(sm, HyperParameterTuningJobConfig=config(), TrainingJobDefinition=definition(
        HyperParameterTuningResourceConfig={"InstanceConfigs": [{"InstanceType": "ml.m5.large"}]})) == (
        "TrainingJobDefinition.HyperParameterTuningResourceConfig.InstanceConfigs[0] must specify InstanceCount, "
        "VolumeSizeInGB.")


@pytest.fixture(scope="module")
def sdk_role(aws) -> str:
    """An execution role with what SDK v3 checks a training role for (through iam:SimulatePrincipalPolicy)."""
    iam = client("iam", aws)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName="sdk-tuning", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="sdk-tuning", PolicyName="training", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return arn


@pytest.mark.slow  # 20-50 s each, with the SDK's import and its polling
@pytest.mark.parametrize("major", [2, 3])
def test_the_sdks_tuner_fits_waits_and_reads_the_best_job_and_the_analytics(aws, sdk_role, tmp_path, major):
    """The real SDK in its own venv (v2: a PyTorch estimator; v3: a ModelTrainer with SourceCode), two trials of
    the user's script; what it reads is what the trials logged."""
    python = sdk_python(major)
    sm = client("sagemaker", aws)
    name = f"sdk-v{major}-tuner"
    arguments = {"bucket": BUCKET, "data": DATA, "image": IMAGE, "role": sdk_role, "name": name,
                 "static": {k: json.loads(v) for k, v in STATIC.items()}}  # as a notebook writes them
    env = {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws, "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(python), str(Path(__file__).with_name("sdk") / f"tuner_v{major}.py"),
                             json.dumps(arguments)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"SDK v{major} tuning job of 2 trials, fit() to Completed: {report['fit_to_completed_s']} s")

    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert job["TrainingJobStatusCounters"]["Completed"] == 2 and job["ObjectiveStatusCounters"]["Succeeded"] == 2
    trials = [t for p in sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=name) for t in p["TrainingJobSummaries"]]
    values = {t["TrainingJobName"]: objective(sm, t["TrainingJobName"]) for t in trials}
    assert report["best"] == job["BestTrainingJob"]["TrainingJobName"] == min(values, key=values.get)
    assert report["ranges"] == {"learning_rate": {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01",
                                                  "ScalingType": "Logarithmic"}}
    if major == 2:
        assert report["best_model"] == f"s3://{BUCKET}/output/{report['best']}/output/model.tar.gz"

    rows = {row["TrainingJobName"]: row for row in report["rows"]}
    assert set(rows) == set(values) and len(rows) == 2
    for trial in trials:
        row, training = rows[trial["TrainingJobName"]], sm.describe_training_job(
            TrainingJobName=trial["TrainingJobName"])
        assert row["TrainingJobStatus"] == "Completed"
        assert row["FinalObjectiveValue"] == pytest.approx(values[trial["TrainingJobName"]])
        assert row["FinalObjectiveValue"] == pytest.approx(user_loss(training["HyperParameters"]["learning_rate"]),
                                                           abs=1e-6)  # the user's script logged it
        assert row["learning_rate"] == pytest.approx(float(training["HyperParameters"]["learning_rate"]))
        assert 0.001 <= row["learning_rate"] <= 0.01
        assert row["TrainingElapsedTimeSeconds"] == pytest.approx(
            (training["TrainingEndTime"] - training["TrainingStartTime"]).total_seconds(), abs=0.01)
        assert training["ResourceConfig"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
        hyperparameters, quote = training["HyperParameters"], '"' if major == 2 else ""  # v2 JSON-quotes them
        assert hyperparameters["sagemaker_program"] == f"{quote}train_user.py{quote}"
        source = json.loads(hyperparameters["sagemaker_submit_directory"]) if major == 2 else hyperparameters[
            "sagemaker_submit_directory"]
        assert source.startswith(f"s3://{BUCKET}/") and source.endswith("/sourcedir.tar.gz")
        client("s3", aws).head_object(Bucket=BUCKET, Key=source.split("/", 3)[3])
        if major == 2:
            assert hyperparameters["sagemaker_job_name"] == f'"{name}"'
            assert hyperparameters["sagemaker_estimator_class_name"] == '"PyTorch"'
        else:  # v3's own driver channel travels with the data
            assert [c["ChannelName"] for c in training["InputDataConfig"]] == ["training", "sm_drivers"]
