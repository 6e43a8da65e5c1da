"""Script mode in the training image: a job on AWS's PyTorch training container URI, run by the emulator in
docker mode, runs the user's script in dogops-training:dev through the image's own sagemaker-training toolkit
(dogops' `train` dispatching to it), on two hosts that resolve each other's names; a ContainerEntrypoint runs
in the image as it would in AWS's."""

import json
import os

import pytest

from ..services.processes import Process, client
from ..services.test_script_mode import BUCKET, DLC, log_lines, request, sdk_hyperparameters, sourcedir, untar, wait

pytestmark = pytest.mark.skipif(os.environ.get("DOGOPS_TEST_IMAGES") != "1",
                                reason="image tests need Docker and built images (make test-images)")


def test_a_script_mode_job_runs_in_the_training_image(tmp_path):
    server = Process("services.emulator", tmp_path, DOGOPS_TRAINING_MODE="docker")
    try:
        s3, sm = client("s3", server.url), client("sagemaker", server.url)
        s3.create_bucket(Bucket=BUCKET)
        for i, value in enumerate(("1.5", "2.5", "4")):
            s3.put_object(Bucket=BUCKET, Key=f"data/value-{i}.txt", Body=value.encode())
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=sourcedir())
        sm.create_training_job(**request("in-image", sdk_hyperparameters(epochs=3, **{"learning-rate": 0.5}),
                                         instances=2))
        sm.create_training_job(**request("in-image-failing", sdk_hyperparameters(fail="bad data")))
        sm.create_training_job(**request("in-image-entrypoint", {}, ContainerEntrypoint=["/bin/bash"], ContainerArguments=[
            "-c", "cat /opt/ml/input/data/training/value-*.txt > /opt/ml/model/values.txt; command -v python3 pip3 "
                  "> /opt/ml/output/data/tools.txt"]))
        job, failing = wait(sm, "in-image", timeout=600), wait(sm, "in-image-failing", timeout=600)
        entrypoint = wait(sm, "in-image-entrypoint", timeout=600)
        entry_model = untar(s3, entrypoint["ModelArtifacts"]["S3ModelArtifacts"]) if "ModelArtifacts" in entrypoint \
            else {}
        entry_output = untar(s3, f"s3://{BUCKET}/output/in-image-entrypoint/output/output.tar.gz") if entry_model else {}
        lines = log_lines(client("logs", server.url), "in-image", "algo-1")
        model = untar(s3, job["ModelArtifacts"]["S3ModelArtifacts"]) if "ModelArtifacts" in job else {}
        output = untar(s3, f"s3://{BUCKET}/output/in-image/output/output.tar.gz") if model else {}
    finally:
        server.stop()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert lines[0] == (f"dogops: {DLC} asks for PyTorch 2.3.0 (cpu, py311); the image dogops-training:dev "
                        "(AWS's sagemaker-training toolkit) runs it")
    assert model["model.txt"] == b"7.000000\n"
    for host in ("algo-1", "algo-2"):
        seen = json.loads(model[f"seen-{host}.json"])
        assert seen["env"]["SM_MODEL_DIR"] == "/opt/ml/model" and seen["cwd"] == "/opt/ml/code"
        assert seen["env"]["SM_CHANNEL_TRAINING"] == "/opt/ml/input/data/training"
        assert seen["env"]["SM_CURRENT_HOST"] == host and seen["answer"] == 42
        assert seen["argv"] == ["--epochs", "3", "--learning-rate", "0.5"] and seen["python"].startswith("/opt/venv/")
    assert output == {"report.txt": b"3 values\n"}
    assert {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]} == {"train:loss": 1.0}
    assert failing["TrainingJobStatus"] == "Failed"
    assert failing["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n")
    assert "bad data" in failing["FailureReason"]
    assert entrypoint["TrainingJobStatus"] == "Completed", entrypoint.get("FailureReason")
    assert entry_model == {"values.txt": b"1.52.54"}
    assert entry_output == {"tools.txt": b"/opt/venv/bin/python3\n/opt/venv/bin/pip3\n"}
