"""The built images under a real Docker engine, run exactly as SageMaker runs them.

Needs `dogops-training:dev` and `dogops-serving:dev` (`make images`, or
`.ci/build-images.sh` offline) and DOGOPS_TEST_IMAGES=1; CI sets both up.
"""

import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from ..conftest import FAST, free_port, read_metrics, run_script, s3_client, tarball
from ..serving.conftest import tree_digest

TRAIN, SERVE = "dogops-training:dev", "dogops-serving:dev"
pytestmark = pytest.mark.skipif(os.environ.get("DOGOPS_TEST_IMAGES") != "1",
                                reason="image tests need Docker and built images (make test-images)")


def docker(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _sagemaker_job(tmp_path, data_dir, hyperparameters):
    config = tmp_path / "config"
    config.mkdir()
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (tmp_path / "model").mkdir()
    (tmp_path / "output").mkdir()
    return ["-v", f"{data_dir}:/opt/ml/input/data/training:ro", "-v", f"{config}:/opt/ml/input/config:ro",
            "-v", f"{tmp_path / 'model'}:/opt/ml/model", "-v", f"{tmp_path / 'output'}:/opt/ml/output"]


def test_images_run_as_root_with_exec_form_entrypoints():
    for image, word in ((TRAIN, "train"), (SERVE, "serve")):
        config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
        assert config["User"] in ("", "root") and config["Entrypoint"] == [word]
    assert json.loads(docker("image", "inspect", SERVE).stdout)[0]["Config"]["Labels"][
        "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"


def test_docker_run_train_follows_the_sagemaker_contract(data_dir, tmp_path):
    mounts = _sagemaker_job(tmp_path, data_dir, {**FAST, "epochs": "3"})
    docker("run", "--rm", *mounts, TRAIN, "train")
    assert read_metrics(tmp_path / "model")["epochs_run"] == 3
    assert (tmp_path / "model" / "manifest.json").exists()


def test_docker_run_train_on_an_empty_channel_fails_with_a_reason(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    mounts = _sagemaker_job(tmp_path, empty, {"epochs": "1"})
    result = docker("run", "--rm", *mounts, TRAIN, "train", check=False)
    assert result.returncode != 0
    assert "DatasetError" in (tmp_path / "output" / "failure").read_text()


def test_the_training_image_runs_with_flags_as_on_ec2(data_dir, tmp_path):
    docker("run", "--rm", "-v", f"{data_dir}:/data:ro", "-v", f"{tmp_path}:/work", TRAIN,
           "--data", "/data", "--model-dir", "/work/TrainedModels", "--checkpoint-dir", "/work/checkpoints",
           "--epochs", "2", "--backbone", "efficientnet_lite0", "--image_size", "64")
    assert (tmp_path / "TrainedModels" / "model.pth").exists()
    assert (tmp_path / "checkpoints" / "checkpoint.pt").exists()


def _wait_ping(url: str, container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    logs = docker("logs", container, check=False)
    raise AssertionError(f"{url}/ping never answered 200:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def test_docker_run_serve_with_the_model_mounted_read_only(trained, sample, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained[0], model)
    before = tree_digest(model)
    port = free_port()
    name = f"dogops-serve-test-{port}"
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "-v", f"{model}:/opt/ml/model:ro",
           SERVE, "serve")
    try:
        _wait_ping(f"http://127.0.0.1:{port}", name)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", data=sample[0], timeout=60,
                                 headers={"Content-Type": "image/jpeg", "Accept": "application/vnd.dogops.topk+json"})
        assert response.json()["predictions"][0]["class"] == "004.Akita"
        started = time.monotonic()
        docker("stop", "-t", "30", name)
        assert time.monotonic() - started < 30
        assert json.loads(docker("inspect", name).stdout)[0]["State"]["ExitCode"] == 0
    finally:
        docker("rm", "-f", name, check=False)
    assert tree_digest(model) == before


def test_serve_starts_with_no_network_at_all(trained, tmp_path):
    name = f"dogops-serve-isolated-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "none", "-v", f"{trained[0]}:/opt/ml/model:ro", SERVE, "serve")
    try:
        probe = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/ping', timeout=2).status)"
        for _ in range(120):
            result = docker("exec", name, "python3", "-c", probe, check=False)
            if result.stdout.strip() == "200":
                break
            time.sleep(0.5)
        assert result.stdout.strip() == "200", docker("logs", name).stderr[-3000:]
    finally:
        docker("rm", "-f", name, check=False)


def test_serve_fetches_model_data_url_from_the_s3_emulator(trained, sample, s3_env, tmp_path):
    s3 = s3_client(s3_env)
    s3.create_bucket(Bucket="image-models")
    s3.put_object(Bucket="image-models", Key="model.tar.gz", Body=tarball(trained[0]))
    port = free_port()
    name = f"dogops-serve-s3-{port}"
    env = [item for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
           for item in ("-e", f"{key}={s3_env[key]}")]
    docker("run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
           "-e", "MODEL_DATA_URL=s3://image-models/model.tar.gz", *env, SERVE, "serve")
    try:
        _wait_ping(f"http://127.0.0.1:{port}", name)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", data=sample[0], timeout=60,
                                 headers={"Content-Type": "image/jpeg"})
        assert max(range(10), key=response.json()[0].__getitem__) == sample[1]
    finally:
        docker("rm", "-f", name, check=False)


def test_tuning_trials_run_as_training_containers(data_dir, tmp_path):
    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "Strategy": "Random", "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2},
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.002", "MaxValue": "0.01"}]},
        "StaticHyperParameters": {**{k: v for k, v in FAST.items() if k != "learning_rate"}, "epochs": "3"}}))
    result = run_script("dogops", "tune", "--data", data_dir, "--spec", spec, "--name", "containers",
                        "--jobs-dir", tmp_path, "--image", TRAIN, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads((tmp_path / "containers" / "results.json").read_text())
    assert [r["status"] for r in rows] == ["Completed", "Completed"]
    assert json.loads((tmp_path / "containers" / "best.json").read_text())["image"] == TRAIN
