"""The user's inference code made ready as AWS's inference toolkits do, by a real ``serve``: ``code/requirements.txt``
installed before the handlers load (into a private environment: the running Python is unchanged), a failing
install a start-up error with pip's reason, and an ``s3://`` ``SAGEMAKER_SUBMIT_DIRECTORY`` (the SDK's
``sourcedir.tar.gz``) fetched and safely unpacked."""

import importlib.util
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ..conftest import s3_client
from .conftest import NET, Server
from .test_toolkit_defaults import JSON, MODEL_FN_ONLY, ROWS, _model_dir, expected

PACKAGE = "dogops_test_scale"
SCALED = MODEL_FN_ONLY + f'''

import {PACKAGE}


def predict_fn(data, model):
    model.eval()
    with torch.no_grad():
        return model(data) * {PACKAGE}.FACTOR
'''


def _wheel(folder: Path, factor: float) -> Path:
    """A pure-Python wheel of the module ``PACKAGE`` (FACTOR = ``factor``), built by hand: no index needed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PACKAGE}-1.0-py3-none-any.whl"
    info = f"{PACKAGE}-1.0.dist-info"
    files = {f"{PACKAGE}.py": f"FACTOR = {factor}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return path


def _answer(server) -> np.ndarray:
    response = server.invoke(json.dumps(ROWS.tolist()).encode(), JSON, Accept=JSON)
    assert response.status_code == 200, response.text
    return np.array(response.json())


def test_code_requirements_are_installed_before_the_handlers_load(tmp_path_factory, net):
    wheels = tmp_path_factory.mktemp("wheels")
    _wheel(wheels, 3.0)
    base = _model_dir(tmp_path_factory, net, code={"net": NET, "inference": SCALED})
    (base / "model" / "code" / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\n{PACKAGE}==1.0\n")
    scratch = tmp_path_factory.mktemp("scratch")  # TMPDIR: the private environment goes there, removed at the end
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=1, TMPDIR=str(scratch)).wait_ready()
    try:
        assert _answer(server) == pytest.approx(expected(net, ROWS) * 3.0, abs=1e-5)
        assert len(list(scratch.glob("dogops-requirements-*"))) == 1
    finally:
        server.stop()
    assert not list(scratch.glob("dogops-requirements-*"))
    assert "installing" in server.log.read_text()
    assert importlib.util.find_spec(PACKAGE) is None  # installed for the model, not into the running Python


def test_requirements_that_cannot_be_installed_stop_the_server_with_pips_reason(tmp_path_factory, net):
    base = _model_dir(tmp_path_factory, net, code={"net": NET, "inference": MODEL_FN_ONLY})
    (base / "model" / "code" / "requirements.txt").write_text("--no-index\ndogops-test-no-such-package==9.9\n")
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=1)
    assert server.proc.wait(timeout=300) == 1
    log = server.log.read_text()
    assert "failed to install" in log and "dogops-test-no-such-package" in log


def _sourcedir(files: dict[str, str], unsafe: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(("../" if unsafe else "") + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bucket(s3_env):
    s3 = s3_client(s3_env)
    s3.create_bucket(Bucket="user-code")
    s3.put_object(Bucket="user-code", Key="job/source/sourcedir.tar.gz",
                  Body=_sourcedir({"net.py": NET, "inference.py": MODEL_FN_ONLY}))
    s3.put_object(Bucket="user-code", Key="bad/sourcedir.tar.gz", Body=_sourcedir({"inference.py": ""}, unsafe=True))
    return s3_env


def test_an_s3_submit_directory_is_fetched_and_its_handlers_serve(tmp_path_factory, net, bucket):
    base = _model_dir(tmp_path_factory, net)  # no code in the model: it is in S3
    env = {k: v for k, v in bucket.items() if k.startswith("AWS_")}
    scratch = tmp_path_factory.mktemp("scratch")  # TMPDIR: the fetched code goes there, removed when serve ends
    server = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS=1, SAGEMAKER_PROGRAM="inference.py", TMPDIR=str(scratch),
                    SAGEMAKER_SUBMIT_DIRECTORY="s3://user-code/job/source/sourcedir.tar.gz", **env).wait_ready()
    try:
        assert _answer(server) == pytest.approx(expected(net, ROWS), abs=1e-5)
        assert len(list(scratch.glob("dogops-code-*"))) == 1
    finally:
        server.stop()
    assert not list(scratch.glob("dogops-code-*"))
    assert "downloading SAGEMAKER_SUBMIT_DIRECTORY s3://user-code/job/source/sourcedir.tar.gz" in server.log.read_text()


@pytest.mark.parametrize("url, reason", [("s3://user-code/bad/sourcedir.tar.gz", "is not a safe .tar.gz"),
                                         ("s3://user-code/missing/sourcedir.tar.gz", "could not be fetched: ClientError")])
def test_an_unsafe_or_missing_submit_directory_is_a_start_up_error(tmp_path_factory, net, bucket, url, reason):
    env = {k: v for k, v in bucket.items() if k.startswith("AWS_")}
    server = Server(_model_dir(tmp_path_factory, net), SAGEMAKER_SUBMIT_DIRECTORY=url, **env)
    assert server.proc.wait(timeout=120) == 1
    assert f"SAGEMAKER_SUBMIT_DIRECTORY {url} {reason}" in server.log.read_text()
