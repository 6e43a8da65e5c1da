"""The examples in examples/sagemaker-sdk/ run on the stack as their user runs them: each notebook, headless
(nbclient, cell by cell), from its SDK's own venv (``make sdk-venvs``), configured only by ``dogops env``. Every
step's wall time is printed; what each step saw is checked against the stack and, for predictions, against the
deployed model file itself."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests

from services.stack import settings
from tests.sdk_venvs import sdk_python

from .conftest import client
from .stacks import ROOT

EXAMPLES = ROOT / "examples" / "sagemaker-sdk"
RUNNER = Path(__file__).with_name("sdk_notebook.py")
# Each notebook runs up to this cell (all of it: upload to cleanup).
UNTIL = {2: "cleanup", 3: "cleanup"}


@pytest.fixture
def logs(session, stack_env):
    return client(session, stack_env, "logs")


@pytest.fixture
def leaves_nothing(s3, stack_env):
    """Whatever the example's run leaves in the stack's bucket (everything it names starts with ``shapes-example``)
    is removed afterwards, pass or fail."""
    yield
    bucket = stack_env["DOGOPS_BUCKET"]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="shapes-example"):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])


def run_notebook(major: int, workdir: Path, stack_env: dict) -> dict:
    """Copy the example into ``workdir``, run its notebook up to ``UNTIL``; its report."""
    for name in ("code", "shapes_data.py", f"sdk_v{major}.ipynb"):
        source = EXAMPLES / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "LANG": "C.UTF-8", **stack_env}
    result = subprocess.run([sdk_python(major), RUNNER, workdir / f"sdk_v{major}.ipynb", "--until", UNTIL[major]],
                            env=env, cwd=workdir, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-8000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"SDK v{major} notebook ({stack_env['AWS_ENDPOINT_URL']}), seconds per step:", json.dumps(report["seconds"]))
    return report


def job_log(logs, job: str) -> str:
    """A training job's log lines, every host's, from the stack's CloudWatch Logs."""
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName="/aws/sagemaker/TrainingJobs",
                                                             logStreamNamePrefix=f"{job}/")
    return "\n".join(event["message"] for page in pages for event in page["events"])


def check_training(report: dict, logs, major: int, bucket: str, workdir: Path) -> None:
    """upload -> fit (1 and 2 instances) -> tune (2 trials) -> best, as the notebook reported them."""
    prefix = f"shapes-example-v{major}"
    assert report["bucket"] == bucket and report["data"] == f"s3://{bucket}/{prefix}/data"
    assert report["uploaded"] == 3 * (24 + 8 + 4)
    # the user's script ran: its own log lines, on each host, and its model packed to S3
    assert report["fit"]["status"] == "Completed" and report["fit2"]["status"] == "Completed"
    single, double = job_log(logs, report["fit"]["job"]), job_log(logs, report["fit2"]["job"])
    assert "[shapes] host algo-1 of 1; lr=0.01 epochs=5" in single and "[shapes] epoch 5: train_loss=" in single
    assert "[shapes] host algo-1 of 2" in double and "[shapes] host algo-2 of 2" in double
    assert report["fit2"]["instances"] == 2
    assert report["fit"]["model_data"] == f"s3://{bucket}/{prefix}/output/{report['fit']['job']}/output/model.tar.gz"
    # two trials of the script; the best by the val_loss its log reported
    trials = report["tune"]["trials"]
    assert len(trials) == 2 and {t["TrainingJobStatus"] for t in trials} == {"Completed"}
    assert len({t["lr"] for t in trials}) == 2 and all(0.003 <= t["lr"] <= 0.03 for t in trials)
    assert report["best"]["job"] == min(trials, key=lambda t: t["FinalObjectiveValue"])["TrainingJobName"]
    assert report["best"]["model_data"].endswith(f"/{report['best']['job']}/output/model.tar.gz")
    with tarfile.open(workdir / "best-model" / "model.tar.gz") as archive:
        assert "model.pth" in archive.getnames()


def expected_logits(model_tar: Path, jpeg: bytes) -> list[list[float]]:
    """What the model file itself answers for ``jpeg``: the example's own model code, on this machine's torch."""
    sys.path.insert(0, str(EXAMPLES / "code"))
    try:
        import torch
        from PIL import Image
        from shapes_model import TinyNet, to_tensor
    finally:
        sys.path.pop(0)
    with tarfile.open(model_tar) as archive:
        checkpoint = torch.load(io.BytesIO(archive.extractfile("model.pth").read()), map_location="cpu")
    model = TinyNet(len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["state_dict"])
    with torch.no_grad():
        return model.eval()(to_tensor(Image.open(io.BytesIO(jpeg))).unsqueeze(0)).tolist()


def check_serving_and_cleanup(report: dict, workdir: Path) -> None:
    """deploy -> predict (JPEG bytes, a JSON URL): the answers are what the deployed model file computes; then
    cleanup left nothing. Each as far as the notebook ran (``UNTIL``)."""
    if "deploy" not in report:
        return
    assert report["deploy"]["status"] == "InService"
    predict, model_tar = report["predict"], workdir / "best-model" / "model.tar.gz"
    for answer, jpeg in ((predict["by_bytes"], (workdir / predict["photo"]).read_bytes()),
                         (predict["by_url"], requests.get(predict["url"], timeout=10).content)):
        [logits] = answer
        assert logits == pytest.approx(expected_logits(model_tar, jpeg)[0], abs=1e-5)
    assert predict["by_bytes"][0] != pytest.approx(predict["by_url"][0], abs=1e-3)
    assert report["cleanup"] == {"objects_left": [], "endpoints_left": [], "configs_left": [], "models_left": []}


def test_the_v2_notebook_runs_on_the_stack(stack, stack_env, logs, tmp_path, leaves_nothing):
    report = run_notebook(2, tmp_path, stack_env)
    check_training(report, logs, 2, stack_env["DOGOPS_BUCKET"], tmp_path)
    check_serving_and_cleanup(report, tmp_path)


def test_the_v3_notebook_runs_on_the_stack(stack, stack_env, logs, tmp_path, leaves_nothing):
    report = run_notebook(3, tmp_path, stack_env)
    assert report["fit"]["role"] == settings.sagemaker_role_arn()  # the default from `dogops env`
    check_training(report, logs, 3, stack_env["DOGOPS_BUCKET"], tmp_path)
    check_serving_and_cleanup(report, tmp_path)
