"""Real training runs of the `train` console script on generated data."""

import json
import signal
import subprocess
import time

import pytest

from training.artifact import load_artifact, verify_artifact
from training.metrics import metric_definitions, parse_metrics

from ..conftest import BIN, FAST, flags, free_port, read_metrics, run_script, script_env


def test_cli_run_learns_the_generated_breeds(trained):
    model_dir, _ = trained
    metrics = read_metrics(model_dir)
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert metrics["epochs_run"] >= 2 and metrics["skipped_images"] == 0


def test_every_epoch_logs_metrics_the_definitions_parse(trained):
    model_dir, result = trained
    parsed = [parse_metrics(line, metric_definitions()) for line in result.stdout.splitlines()]
    epochs = [p for p in parsed if "train_loss" in p]
    assert len(epochs) == read_metrics(model_dir)["epochs_run"]
    assert all(set(p) == {"train_loss", "valid_loss", "valid_accuracy"} for p in epochs)
    final = [p for p in parsed if "test_accuracy" in p][-1]
    assert final["test_accuracy"] == round(read_metrics(model_dir)["test_accuracy"], 6)
    assert "\t" not in result.stdout


def test_losses_are_means_not_batch_sums(trained):
    history = read_metrics(trained[0])["history"]
    # log(10) ~= 2.3 is the loss of a uniform guess over 10 classes; a batch-summed loss would be ~32x that.
    assert 0 < history[0]["train_loss"] < 3.0


def test_artifact_loads_and_answers_log_probabilities(trained, data_dir):
    import torch

    from training.dataset import load_rgb
    from training.preprocess import image_transform

    model, classes, config = load_artifact(trained[0])
    assert classes[0] == "001.Affenpinscher" and len(classes) == 10
    image = next((data_dir / "test" / classes[3]).iterdir())
    with torch.inference_mode():
        out = model(image_transform(config["backbone"], config["image_size"])(load_rgb(image)).unsqueeze(0))
    assert out.shape == (1, 10)
    assert torch.allclose(out.exp().sum(), torch.tensor(1.0), atol=1e-5)
    assert out.argmax().item() == 3


def test_manifest_detects_a_modified_file(trained, tmp_path):
    import shutil

    from training.artifact import ArtifactError

    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    verify_artifact(copy)
    (copy / "classes.json").write_text(json.dumps(["001.Affenpinscher"]))
    with pytest.raises(ArtifactError, match="sha256"):
        verify_artifact(copy)


def test_feature_cache_is_reused_and_changes_nothing(trained, data_dir, cache_dir, tmp_path):
    model_dir = tmp_path / "model"
    cached = run_script("train", "--data", data_dir, "--model-dir", model_dir, "--checkpoint-dir",
                        tmp_path / "ck", "--cache-dir", cache_dir, *flags(FAST), check=True)
    assert "feature cache hit" in cached.stdout
    assert read_metrics(model_dir)["test_loss"] == read_metrics(trained[0])["test_loss"]


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_rerun_ends_like_an_uninterrupted_run(data_dir, tmp_path):
    # Without the feature cache every epoch runs the backbone, so epochs are slow enough to interrupt.
    hp = {**FAST, "epochs": "6", "patience": "0", "feature_cache": "false"}
    reference = tmp_path / "reference"
    run_script("train", "--data", data_dir, "--model-dir", reference, "--checkpoint-dir", tmp_path / "ck-ref",
               *flags(hp), check=True)

    args = [str(BIN / "train"), "--data", str(data_dir), "--model-dir", str(tmp_path / "model"),
            "--checkpoint-dir", str(tmp_path / "ck"), *flags(hp)]
    proc = subprocess.Popen(args, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "epoch=2 " in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, "".join(lines)
    assert "checkpoint saved" in "".join(lines)
    assert (tmp_path / "ck" / "checkpoint.pt").exists()
    assert not (tmp_path / "model" / "model.pth").exists()

    resumed = run_script("train", *args[1:], check=True)
    assert "resuming from checkpoint" in resumed.stdout
    assert "epoch=1 " not in resumed.stdout
    got, want = read_metrics(tmp_path / "model"), read_metrics(reference)
    for key in ("test_loss", "test_accuracy", "valid_loss", "history"):
        assert got[key] == want[key], key


@pytest.mark.slow
def test_two_hosts_train_data_parallel_and_agree(data_dir, tmp_path):
    port = free_port()
    hp = flags({**FAST, "epochs": "6"})
    procs = []
    for host in ("algo-1", "algo-2"):
        env = script_env(SM_HOSTS='["algo-1","algo-2"]', SM_CURRENT_HOST=host, MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=port)
        procs.append(subprocess.Popen(
            [str(BIN / "train"), "--data", str(data_dir), "--model-dir", str(tmp_path / host / "model"),
             "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache"), *hp],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(0.5)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    digests = [line.split("result_digest=")[1] for out in outputs for line in out.splitlines()
               if "result_digest=" in line]
    assert len(digests) == 2 and digests[0] == digests[1], outputs
    assert "2-host gloo group" in outputs[0]
    # One host writes the model and logs metrics; the other logs no duplicate metric lines.
    assert read_metrics(tmp_path / "algo-1" / "model")["test_accuracy"] >= 0.9
    assert not (tmp_path / "algo-2" / "model").exists()
    assert "train_loss=" not in outputs[1]
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {"checkpoint-algo-1.pt", "checkpoint-algo-2.pt"}


def test_pretrained_weights_that_cannot_be_had_are_an_error(data_dir, tmp_path):
    result = run_script("train", "--data", data_dir, "--model-dir", tmp_path / "m", "--backbone", "resnet18",
                        "--image_size", "64", env=script_env(TORCH_HOME=tmp_path / "torch-home"))
    assert result.returncode == 1
    assert "WeightsUnavailable" in result.stdout and "pretrained=false" in result.stdout
    assert not (tmp_path / "m").exists()
