"""Native hosting (``DOGOPS_HOSTING=native``): endpoints created with boto3 on a real emulator are served by their
own ``serve`` processes, reached through a real gateway's InvokeEndpoint. Each answers with ITS model (checked
against the model run directly), a broken model fails the endpoint with a reason, variants split traffic by weight
and honour TargetVariant, an update rolls to the new model, a delete stops the processes."""

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from botocore.exceptions import WaiterError

from services.stack import settings

from .processes import client, emulator, gateway, tar_gz

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
ROWS = [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]]
FAST_WAIT = {"Delay": 1, "MaxAttempts": 240}
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # deprecated, yet what the toolkit loads


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2).eval()


def _expected(net) -> list:
    with torch.no_grad():
        return net(torch.tensor(ROWS)).tolist()


def _scripted(net) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An emulator hosting natively and a gateway; yields (emulator, gateway, hosting dir)."""
    logs = tmp_path_factory.mktemp("native-hosting")
    folder = logs / "hosting"
    server = emulator(logs, DOGOPS_HOSTING="native", DOGOPS_HOSTING_DIR=folder, DOGOPS_HOSTING_TIMEOUT=120)
    gw = gateway(logs, server.url)
    client("s3", server.url).create_bucket(Bucket="models")
    yield server, gw, folder
    gw.stop()
    server.stop()


def _model(stack, name: str, files: dict[str, bytes], **container) -> None:
    client("s3", stack[0].url).put_object(Bucket="models", Key=f"{name}/model.tar.gz", Body=tar_gz(files))
    client("sagemaker", stack[0].url).create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://models/{name}/model.tar.gz", **container})


def _config(stack, name: str, variants: dict[str, tuple[str, float]]) -> None:
    client("sagemaker", stack[0].url).create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": variant, "ModelName": model, "InitialVariantWeight": weight, "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large"} for variant, (model, weight) in variants.items()])


def _invoke(stack, endpoint: str, **extra) -> tuple[str, list]:
    answer = client("sagemaker-runtime", stack[1].url).invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(ROWS), ContentType="application/json", Accept="application/json",
        **extra)
    return answer["InvokedProductionVariant"], json.loads(answer["Body"].read())


def _close(got: list, want: list) -> bool:
    return all(abs(a - b) < 1e-5 for row_a, row_b in zip(got, want) for a, b in zip(row_a, row_b))


def _serving_processes(folder: Path) -> list[int]:
    """The processes whose working directory is under ``folder`` (each ``serve`` runs in its variant's)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _eventually(check, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _gone(folder: Path, pids: set[int]) -> bool:
    """Whether processes ``pids`` under ``folder`` are all gone within a minute."""
    return _eventually(lambda: not pids & set(_serving_processes(folder)))


def _master(stack, endpoint: str) -> int | None:
    """The pid of the endpoint's ``serve`` (gunicorn's master, the emulator's child), or None."""
    for pid in _serving_processes(stack[2]):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if int(stat[1]) == stack[0].proc.pid and cwd.parent.name.startswith(f"{endpoint}-"):
            return pid
    return None


def _answers(stack, endpoint: str) -> bool:
    try:
        _invoke(stack, endpoint)
        return True
    except Exception:  # noqa: BLE001 (ModelError while no server answers)
        return False


@pytest.fixture(scope="module")
def two_models(stack):
    nets = {"alpha": _net(1), "beta": _net(2)}
    for name, net in nets.items():
        _model(stack, name, {"model.pt": _scripted(net)})
    return {name: _expected(net) for name, net in nets.items()}


def test_each_endpoint_serves_its_own_model_until_deleted(stack, two_models):
    sagemaker = client("sagemaker", stack[0].url)
    for name in two_models:
        _config(stack, name, {"AllTraffic": (name, 1.0)})
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    with pytest.raises(client("sagemaker-runtime", stack[1].url).exceptions.ValidationError, match="not in service"):
        _invoke(stack, "alpha")
    for name in two_models:
        sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    answers = {name: _invoke(stack, name) for name in two_models}
    for name, want in two_models.items():
        assert answers[name][0] == "AllTraffic" and _close(answers[name][1], want)
    assert not _close(answers["alpha"][1], answers["beta"][1])
    assert len(_serving_processes(stack[2])) >= 2

    master = _master(stack, "alpha")  # killed as an out-of-memory kill would: a new server takes its place
    os.killpg(master, signal.SIGKILL)
    assert _eventually(lambda: _master(stack, "alpha") not in (None, master)), "no new server"
    time.sleep(settings.HOSTING_CACHE_SECONDS + 0.5)  # no route to the killed one is left in the gateway's cache
    assert _eventually(lambda: _answers(stack, "alpha")), "the new server does not answer"
    assert _close(_invoke(stack, "alpha")[1], two_models["alpha"])
    assert client("sagemaker", stack[0].url).describe_endpoint(EndpointName="alpha")["EndpointStatus"] == "InService"

    for name in two_models:
        sagemaker.delete_endpoint(EndpointName=name)
    assert _gone(stack[2], set(_serving_processes(stack[2])))
    assert _eventually(lambda: not any(stack[2].iterdir())), "the models' files are left"
    with pytest.raises(client("sagemaker-runtime", stack[1].url).exceptions.ValidationError, match="not found"):
        _invoke(stack, "alpha")


def test_variants_split_by_weight_and_target_variant_picks_one(stack, two_models):
    sagemaker = client("sagemaker", stack[0].url)
    _config(stack, "split", {"A": ("alpha", 1.0), "B": ("beta", 1.0)})
    _config(stack, "only-b", {"A": ("alpha", 0.0), "B": ("beta", 1.0)})
    sagemaker.create_endpoint(EndpointName="split", EndpointConfigName="split")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="split", WaiterConfig=FAST_WAIT)
    seen = {}
    for _ in range(30):
        variant, answer = _invoke(stack, "split")
        seen[variant] = answer
    assert set(seen) == {"A", "B"}  # 1:1, 30 draws: both with probability 1 - 2**-29
    assert _close(seen["A"], two_models["alpha"]) and _close(seen["B"], two_models["beta"])
    for variant, model in (("A", "alpha"), ("B", "beta")):
        got = _invoke(stack, "split", TargetVariant=variant)
        assert got[0] == variant and _close(got[1], two_models[model])

    before = set(_serving_processes(stack[2]))
    sagemaker.update_endpoint(EndpointName="split", EndpointConfigName="only-b")
    assert sagemaker.describe_endpoint(EndpointName="split")["EndpointStatus"] == "Updating"
    assert _invoke(stack, "split")[0] in ("A", "B")  # the old servers answer meanwhile
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="split", WaiterConfig=FAST_WAIT)
    assert sagemaker.describe_endpoint(EndpointName="split")["EndpointConfigName"] == "only-b"
    # the old servers go once the gateway's cached routes have expired, drained (SIGTERM)
    assert _gone(stack[2], before), "the old servers still run"
    assert {_invoke(stack, "split")[0] for _ in range(10)} == {"B"}  # weight 0: never drawn
    assert _invoke(stack, "split", TargetVariant="A")[0] == "A"
    sagemaker.delete_endpoint(EndpointName="split")


def test_a_model_that_cannot_load_fails_the_endpoint_with_its_reason(stack, two_models):
    sagemaker = client("sagemaker", stack[0].url)
    _model(stack, "state-dict", {"model.pth": b"not a TorchScript archive"})
    _config(stack, "state-dict", {"AllTraffic": ("state-dict", 1.0)})
    sagemaker.create_model(ModelName="missing", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": "s3://models/nothing-here/model.tar.gz"})
    _config(stack, "missing", {"AllTraffic": ("missing", 1.0)})
    for name in ("state-dict", "missing"):
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        with pytest.raises(WaiterError):
            sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    reason = sagemaker.describe_endpoint(EndpointName="state-dict")
    assert reason["EndpointStatus"] == "Failed"
    assert reason["FailureReason"].startswith("The primary container for production variant AllTraffic did not "
                                              "pass the ping health check.")
    assert "model.pth. Please ensure model is saved using torchscript." in reason["FailureReason"]
    assert sagemaker.describe_endpoint(EndpointName="missing")["FailureReason"] == \
        "Could not find model data at s3://models/nothing-here/model.tar.gz."
    with pytest.raises(client("sagemaker-runtime", stack[1].url).exceptions.ValidationError, match="not in service"):
        _invoke(stack, "state-dict")
    for name in ("state-dict", "missing"):
        sagemaker.delete_endpoint(EndpointName=name)

    _config(stack, "steady", {"AllTraffic": ("alpha", 1.0)})  # an update to the broken model is rolled back
    sagemaker.create_endpoint(EndpointName="steady", EndpointConfigName="steady")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="steady", WaiterConfig=FAST_WAIT)
    sagemaker.update_endpoint(EndpointName="steady", EndpointConfigName="state-dict")
    assert _eventually(lambda: "FailureReason" in sagemaker.describe_endpoint(EndpointName="steady"))
    described = sagemaker.describe_endpoint(EndpointName="steady")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "steady")
    assert "did not pass the ping health check" in described["FailureReason"]
    assert _close(_invoke(stack, "steady")[1], two_models["alpha"])
    sagemaker.delete_endpoint(EndpointName="steady")


INFERENCE = b"""import os

import torch


def model_fn(model_dir):
    net = torch.nn.Linear(3, 2)
    net.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return net.eval()
"""


def test_a_framework_image_serves_the_sdks_repacked_model_with_its_inference_script(stack):
    """What the SageMaker SDK deploys for ``PyTorchModel(entry_point="inference.py")``: a PyTorch inference DLC,
    the model.tar.gz repacked with ``code/inference.py`` (model_fn only: the toolkit's defaults do the rest)."""
    net = _net(3)
    weights = io.BytesIO()
    torch.save(net.state_dict(), weights)
    _model(stack, "repacked", {"model.pth": weights.getvalue(), "code/inference.py": INFERENCE}, Environment={
        "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": "us-east-1"})
    _config(stack, "repacked", {"AllTraffic": ("repacked", 1.0)})
    sagemaker = client("sagemaker", stack[0].url)
    sagemaker.create_endpoint(EndpointName="repacked", EndpointConfigName="repacked")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="repacked", WaiterConfig=FAST_WAIT)
    assert _close(_invoke(stack, "repacked")[1], _expected(net))
    sagemaker.delete_endpoint(EndpointName="repacked")


def test_an_s3_submit_directory_is_fetched_for_the_server(stack):
    """A model the SDK does not repack names its code as an S3 ``sourcedir.tar.gz`` in
    ``SAGEMAKER_SUBMIT_DIRECTORY``: the hoster fetches and unpacks it (the server has no credentials), and the
    server's handlers are that code's."""
    net = _net(4)
    weights = io.BytesIO()
    torch.save(net.state_dict(), weights)
    client("s3", stack[0].url).put_object(Bucket="models", Key="sourced/sourcedir.tar.gz",
                                          Body=tar_gz({"inference.py": INFERENCE}))
    _model(stack, "sourced", {"model.pth": weights.getvalue()}, Environment={
        "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "s3://models/sourced/sourcedir.tar.gz"})
    _config(stack, "sourced", {"AllTraffic": ("sourced", 1.0)})
    sagemaker = client("sagemaker", stack[0].url)
    sagemaker.create_endpoint(EndpointName="sourced", EndpointConfigName="sourced")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="sourced", WaiterConfig=FAST_WAIT)
    assert _close(_invoke(stack, "sourced")[1], _expected(net))
    sagemaker.delete_endpoint(EndpointName="sourced")
