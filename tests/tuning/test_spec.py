import copy

import optuna
import pytest

from dogops.sagemaker_model import validate
from dogops.tuning.request import tuning_job_request
from dogops.tuning.spec import SpecError, load_spec, parse_spec, sampler_and_pruner

IMAGE = "dogops-training@sha256:" + "a" * 64
ROLE = "arn:aws:iam::123456789012:role/dogops-sagemaker"


def test_default_spec_is_the_original_search():
    spec = load_spec()
    assert spec.objective == "test_loss" and spec.minimize and spec.strategy == "Bayesian"
    lr, bs = spec.ranges
    assert (lr.name, lr.low, lr.high, lr.scaling) == ("learning_rate", 0.001, 0.1, "Logarithmic")
    assert (bs.name, bs.values) == ("batch_size", ("32", "64", "128", "256", "512"))


def _raw():
    return copy.deepcopy(load_spec().raw)


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(Strategy="Annealing"), "Strategy must be one of"),
    (lambda r: r["HyperParameterTuningJobObjective"].update(MetricName="f1"), "not among the metric definitions"),
    (lambda r: r.update(Extra=1), "unknown spec key"),
    (lambda r: r.update(Strategy="Grid"), "categorical ranges only"),
    (lambda r: r.update(Strategy="Hyperband", TrainingJobEarlyStoppingType="Auto"), "must be Off"),
    (lambda r: r["ParameterRanges"]["ContinuousParameterRanges"][0].update(MinValue="0"), "needs MinValue > 0"),
    (lambda r: r["ParameterRanges"]["ContinuousParameterRanges"][0].update(ScalingType="ReverseLogarithmic",
                                                                           MaxValue="2"), "0 <= MinValue"),
    (lambda r: r["StaticHyperParameters"].update(batch_size="64"), "both static and tuned"),
    (lambda r: r["StaticHyperParameters"].update(lr="0.1"), "unknown hyperparameter"),
    (lambda r: r.pop("HyperParameterTuningJobObjective"), "missing spec field"),
])
def test_bad_specs_are_clear_errors(change, message):
    raw = _raw()
    change(raw)
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_the_sdks_own_keys_pass_and_a_users_script_may_take_any_name():
    raw = _raw()
    raw["StaticHyperParameters"].update(sagemaker_program='"train.py"', sagemaker_container_log_level="20")
    assert parse_spec(raw).static["sagemaker_program"] == '"train.py"'  # as sent: the trial reads it
    raw["StaticHyperParameters"]["lr"] = "0.1"
    assert parse_spec(raw, train_names=False).static["lr"] == "0.1"
    raw["Strategy"], raw["StaticHyperParameters"]["epochs"] = "Hyperband", '"4"'  # JSON-quoted by SDK v2
    assert parse_spec(raw, train_names=False).max_resource == 4
    raw["StaticHyperParameters"]["num_epochs"] = raw["StaticHyperParameters"].pop("epochs")  # as AWS infers it
    assert parse_spec(raw, train_names=False).max_resource == 4
    del raw["StaticHyperParameters"]["num_epochs"]
    with pytest.raises(SpecError, match="MaxResource parameter is not provided and could not be inferred"):
        parse_spec(raw, train_names=False)


@pytest.mark.parametrize("scaling", ["Linear", "Logarithmic", "ReverseLogarithmic"])
def test_a_value_a_range_drew_is_recorded_as_its_sample_was(scaling):
    """A warm start's earlier trials enter the study as the range's own samples would have."""
    raw = _raw()
    raw["ParameterRanges"]["ContinuousParameterRanges"][0].update(ScalingType=scaling, MinValue="0.001",
                                                                  MaxValue="0.5")
    raw["ParameterRanges"]["IntegerParameterRanges"] = [{"Name": "epochs", "MinValue": "2", "MaxValue": "9"}]
    raw["StaticHyperParameters"].pop("epochs")
    spec = parse_spec(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    drawn = {r.name: r.suggest(trial) for r in spec.ranges}
    for r in spec.ranges:
        name, distribution, value = r.observed(drawn[r.name])
        assert distribution == trial.distributions[name] and value == pytest.approx(trial.params[name])
    lr, epochs, batch_size = spec.ranges
    assert lr.observed("0.9") is None and epochs.observed("2.5") is None and epochs.observed("10") is None
    assert batch_size.observed("1024") is None and batch_size.observed("64")[2] == "64"


@pytest.mark.parametrize("scaling", ["Linear", "Logarithmic", "ReverseLogarithmic", "Auto"])
def test_samples_stay_in_range_for_every_scaling(scaling):
    raw = _raw()
    raw["ParameterRanges"]["ContinuousParameterRanges"][0].update(ScalingType=scaling, MinValue="0.001",
                                                                  MaxValue="0.5")
    raw["ParameterRanges"]["IntegerParameterRanges"] = [{"Name": "epochs", "MinValue": "2", "MaxValue": "9"}]
    raw["StaticHyperParameters"].pop("epochs")
    spec = parse_spec(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [{r.name: r.suggest(study.ask()) for r in spec.ranges} for _ in range(50)]
    assert all(0.001 <= float(v["learning_rate"]) <= 0.5 for v in values)
    assert all(2 <= int(v["epochs"]) <= 9 for v in values)


def test_strategies_map_to_optuna():
    raw = _raw()
    for strategy, sampler, pruner in (("Bayesian", "TPESampler", "NopPruner"), ("Random", "RandomSampler", "NopPruner"),
                                      ("Hyperband", "TPESampler", "HyperbandPruner")):
        raw["Strategy"] = strategy
        s, p = sampler_and_pruner(parse_spec(raw))
        assert (type(s).__name__, type(p).__name__) == (sampler, pruner)
    raw.update(Strategy="Random", TrainingJobEarlyStoppingType="Auto")
    assert type(sampler_and_pruner(parse_spec(raw))[1]).__name__ == "MedianPruner"


def test_the_request_passes_botocore_validation_and_invalid_ones_do_not():
    request = tuning_job_request(load_spec(), "dogops-tune", IMAGE, ROLE, "s3://b/data", "s3://b/out")
    config = request["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"]["ContinuousParameterRanges"][0]["MinValue"] == "0.001"
    assert request["TrainingJobDefinition"]["StaticHyperParameters"]["backbone"] == "efficientnet_lite0"
    assert {d["Name"] for d in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]} >= {
        "test_loss", "valid_loss"}
    request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"] = "two"
    with pytest.raises(ValueError, match="MaxParallelTrainingJobs"):
        validate(request, "CreateHyperParameterTuningJob")


def test_the_emulator_accepts_the_request(s3_env):
    import boto3

    request = tuning_job_request(load_spec(), "dogops-tune-emu", IMAGE, ROLE, "s3://b/data", "s3://b/out")
    sm = boto3.client("sagemaker", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    sm.create_hyper_parameter_tuning_job(**request)
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="dogops-tune-emu")
    assert described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] == "test_loss"
