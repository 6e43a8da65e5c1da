"""`train` under the SageMaker training contract: /opt/ml layout, string hyperparameters, failures."""

import json

import pytest

from training.artifact import verify_artifact

from ..conftest import FAST, read_metrics, run_script, script_env


def _job(base, data_dir, hyperparameters: dict):
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (base / "input" / "config" / "inputdataconfig.json").write_text(
        json.dumps({"training": {"TrainingInputMode": "File"}}))
    (base / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0",
         "current_instance_type": "local"}))
    channel = base / "input" / "data" / "training"
    channel.parent.mkdir(parents=True)
    if data_dir is not None:
        channel.symlink_to(data_dir, target_is_directory=True)
    else:
        channel.mkdir()
    return base


# SDK v2 framework estimators JSON-encode ("\"efficientnet_lite0\"", "true"); generic ones use str() ("True").
@pytest.mark.parametrize("argv,encode", [
    ((), lambda v: json.dumps(v) if isinstance(v, str) and not v[0].isdigit() else v),
    (("train",), lambda v: v),
])
def test_job_in_sagemaker_layout_writes_the_artifact(data_dir, cache_dir, tmp_path, argv, encode):
    hyperparameters = {k: encode(v) for k, v in {**FAST, "epochs": "3"}.items()}
    hyperparameters |= {"pretrained": "True", "sagemaker_program": '"train"', "_tuning_objective_metric": "x"}
    base = _job(tmp_path / "ml", data_dir, hyperparameters)
    result = run_script("train", *argv, env=script_env(SAGEMAKER_BASE_DIR=base, DOGOPS_CACHE_DIR=cache_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert verify_artifact(base / "model")["backbone"] == "efficientnet_lite0"
    assert read_metrics(base / "model")["epochs_run"] == 3
    assert (base / "checkpoints" / "checkpoint.pt").exists()
    assert not (base / "output" / "failure").exists()


def test_sm_channel_training_overrides_the_default_channel(data_dir, cache_dir, tmp_path):
    base = _job(tmp_path / "ml", None, {**FAST, "epochs": "1"})
    result = run_script("train", env=script_env(SAGEMAKER_BASE_DIR=base, SM_CHANNEL_TRAINING=data_dir,
                                                DOGOPS_CACHE_DIR=cache_dir))
    assert result.returncode == 0, result.stdout
    assert (base / "model" / "model.pth").exists()


def test_empty_channel_fails_with_a_reason(tmp_path):
    base = _job(tmp_path / "ml", None, {"epochs": "1"})
    result = run_script("train", env=script_env(SAGEMAKER_BASE_DIR=base))
    assert result.returncode != 0
    reason = (base / "output" / "failure").read_text()
    assert reason.startswith("DatasetError") and "dogImages layout" in reason and len(reason) <= 1024


def test_unknown_hyperparameter_fails_with_a_reason(data_dir, tmp_path):
    base = _job(tmp_path / "ml", data_dir, {"learning_rat": "0.1"})
    result = run_script("train", env=script_env(SAGEMAKER_BASE_DIR=base))
    assert result.returncode == 1
    assert "unknown hyperparameter(s): learning_rat" in (base / "output" / "failure").read_text()
