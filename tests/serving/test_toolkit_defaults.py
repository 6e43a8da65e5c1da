"""A user's model and handler script served with the PyTorch inference toolkit's defaults, over real HTTP."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ..conftest import free_port, run_script, script_env
from .conftest import NET, Server

MODEL_FN_ONLY = '''
import os

import torch
from net import Net


def model_fn(model_dir):
    model = Net()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model
'''

WITH_INPUT_FN = MODEL_FN_ONLY + '''

import json


def input_fn(body, content_type):
    return torch.tensor(json.loads(body)["instances"], dtype=torch.float32)
'''

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
ROWS = np.array([[0.5, -1.25, 2.0], [3.0, 0.125, -0.75]], dtype=np.float32)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


WRITE = {JSON: lambda a: json.dumps(a.tolist()).encode(),
         CSV: lambda a: "\n".join(",".join(map(str, row)) for row in a.tolist()).encode(),
         NPY: _npy}
READ = {JSON: lambda body: np.array(json.loads(body)),
        CSV: lambda body: np.genfromtxt(io.BytesIO(body), delimiter=",", ndmin=2),
        NPY: lambda body: np.load(io.BytesIO(body))}


def expected(net, rows) -> np.ndarray:
    with torch.no_grad():
        return net(torch.as_tensor(rows, dtype=torch.float32)).numpy()


def _model_dir(tmp_path_factory, net, scripted: bool = False, code: dict[str, str] | None = None) -> Path:
    """An /opt/ml root whose model is ``net`` as a state dict (model.pth) or TorchScript (model.pt),
    with ``code``'s modules in ``code/``."""
    base = tmp_path_factory.mktemp("ml")
    model = base / "model"
    (model / "code").mkdir(parents=True)
    for name, text in (code or {}).items():
        (model / "code" / f"{name}.py").write_text(text)
    if scripted:
        torch.jit.save(torch.jit.script(net), model / "model.pt")
    else:
        torch.save(net.state_dict(), model / "model.pth")
    return base


@contextlib.contextmanager
def serving(base: Path):
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=1).wait_ready()
    try:
        yield server
    finally:
        assert server.stop() < 30


@pytest.fixture(scope="module")
def model_fn_only(tmp_path_factory, net):
    with serving(_model_dir(tmp_path_factory, net, code={"net": NET, "inference": MODEL_FN_ONLY})) as server:
        yield server


@pytest.mark.parametrize("accept", [JSON, CSV, NPY])
@pytest.mark.parametrize("content_type", [JSON, CSV, NPY])
def test_a_script_with_only_model_fn_answers_json_csv_and_npy(model_fn_only, net, content_type, accept):
    response = model_fn_only.invoke(WRITE[content_type](ROWS), content_type, Accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == accept
    answer = READ[accept](response.content)
    assert answer.shape == (2, 2)
    np.testing.assert_allclose(answer, expected(net, ROWS), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("accept,chosen", [(None, JSON), ("*/*", JSON), ("text/html, text/csv", CSV),
                                           ("application/x-npy,application/json", NPY)])
def test_accept_picks_the_first_type_the_toolkit_writes(model_fn_only, net, accept, chosen):
    headers = {"Accept": accept} if accept else {}
    response = model_fn_only.invoke(WRITE[JSON](ROWS[:1]), JSON, **headers)
    assert response.status_code == 200 and response.headers["Content-Type"] == chosen
    np.testing.assert_allclose(READ[chosen](response.content), expected(net, ROWS[:1]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("content_type", ["image/jpeg", "text/plain", "application/x-npz"])
def test_an_unsupported_content_type_is_415_with_the_toolkits_message(model_fn_only, content_type):
    response = model_fn_only.invoke(b"1,2,3", content_type, Accept=JSON)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert response.json()["message"].startswith(f"Content type {content_type} is not supported by this framework.")


@pytest.mark.parametrize("accept", ["text/html", "application/json;q=0.9", "image/*"])  # compared whole, as AWS does
def test_an_unsupported_accept_is_406_with_the_toolkits_message(model_fn_only, accept):
    response = model_fn_only.invoke(WRITE[JSON](ROWS), JSON, Accept=accept)
    assert response.status_code == 406
    assert response.json() == {"error": "not_acceptable", "message": response.json()["message"]}
    assert response.json()["message"].startswith(f"Content type {accept} is not supported by this framework.")


@pytest.mark.parametrize("body,content_type,message", [
    (b"[[1, 2, 3], [4, 5]]", JSON, "the application/json body is not a numeric array"),
    (b"{not json", JSON, "the application/json body is not a numeric array"),
    (b'[["a", "b", "c"]]', JSON, "the application/json body is not a numeric array"),
    (b"1,2,3\n4,5", CSV, "the text/csv body is not a numeric array"),
    (b"\xff\xfe", CSV, "the text/csv body is not UTF-8"),
    (_npy(np.array([{"a": 1}], dtype=object)), NPY, "Object arrays cannot be loaded"),
    (b"\x93NUMPY", NPY, "the application/x-npy body is not a numeric array"),
    (b"[[1, 2]]", JSON, "the model cannot take a float32 tensor of shape [1, 2]"),
    (_npy(ROWS.astype(np.float64)), NPY, "the model cannot take a float64 tensor of shape [2, 3]"),
])
def test_a_body_the_model_cannot_take_is_400_with_the_reason(model_fn_only, body, content_type, message):
    response = model_fn_only.invoke(body, content_type, Accept=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request" and message in response.json()["message"]


def test_a_script_with_model_fn_and_input_fn_gets_the_default_predict_and_output(tmp_path_factory, net):
    with serving(_model_dir(tmp_path_factory, net, code={"net": NET, "inference": WITH_INPUT_FN})) as server:
        response = server.invoke(json.dumps({"instances": ROWS.tolist()}).encode(), JSON, Accept=CSV)
    assert response.status_code == 200 and response.headers["Content-Type"] == CSV
    np.testing.assert_allclose(READ[CSV](response.content), expected(net, ROWS), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # deprecated in torch, yet what the toolkit loads
def test_without_a_script_the_toolkit_loads_a_torchscript_model(tmp_path_factory, net):
    with serving(_model_dir(tmp_path_factory, net, scripted=True)) as server:
        response = server.invoke(_npy(ROWS), NPY, Accept=JSON)
    assert response.status_code == 200 and response.headers["Content-Type"] == JSON
    np.testing.assert_allclose(READ[JSON](response.content), expected(net, ROWS), rtol=1e-5, atol=1e-6)


def test_without_a_model_fn_the_model_file_must_be_one_torchscript_file(tmp_path_factory, net):
    base = _model_dir(tmp_path_factory, net)
    (base / "model" / "other.pt").write_bytes((base / "model" / "model.pth").read_bytes())
    result = run_script("serve", env=script_env(SAGEMAKER_BASE_DIR=base), timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Exactly one .pth or .pt file is required for PyTorch models: ['model.pth', 'other.pt']" in result.stderr

    (base / "model" / "other.pt").unlink()  # one file, but a state dict, not TorchScript
    result = run_script("serve", env=script_env(SAGEMAKER_BASE_DIR=base, SAGEMAKER_MODEL_SERVER_WORKERS=1,
                                                SAGEMAKER_BIND_TO_PORT=free_port(), DOGOPS_BIND_HOST="127.0.0.1"),
                        timeout=60)
    assert result.returncode != 0
    assert f"Failed to load {base / 'model' / 'model.pth'}. Please ensure model is saved using torchscript." \
        in result.stderr
