"""How `serve` starts: model sources, manifest checks, handler overrides, clear start-up errors."""

import io
import shutil
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ..conftest import run_script, s3_client, script_env, tarball
from .conftest import Server


def _base_with_model(trained, tmp_path):
    base = tmp_path / "ml"
    shutil.copytree(trained[0], base / "model")
    return base


def _start_error(base, **env) -> str:
    result = run_script("serve", env=script_env(SAGEMAKER_BASE_DIR=base, **env), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_modified_model_file_is_a_clear_startup_error(trained, tmp_path):
    base = _base_with_model(trained, tmp_path)
    (base / "model" / "classes.json").write_text("[]")
    assert "does not match its sha256" in _start_error(base)


def test_a_missing_model_is_a_clear_startup_error(tmp_path):
    assert "no model directory" in _start_error(tmp_path / "nothing")


def test_bad_settings_are_a_clear_startup_error(trained, tmp_path):
    assert "SAGEMAKER_MODEL_SERVER_WORKERS must be an integer" in _start_error(
        _base_with_model(trained, tmp_path), SAGEMAKER_MODEL_SERVER_WORKERS="many")


def test_arguments_other_than_serve_are_refused(tmp_path):
    result = run_script("serve", "--port", "1", env=script_env(SAGEMAKER_BASE_DIR=tmp_path))
    assert result.returncode == 2 and "usage: serve" in result.stderr


CUSTOM = '''
import json
from serving.inference import output_fn as default_output_fn

def output_fn(prediction, accept, context):
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "handler=custom")
    body, _ = default_output_fn(prediction, "application/vnd.dogops.topk+json", context)
    return json.dumps({"custom": json.loads(body)["predictions"][0]["class"]}), "application/json"
'''


@pytest.mark.parametrize("program,env", [("inference", {}), ("custom", {"SAGEMAKER_PROGRAM": "custom.py"})])
def test_code_in_the_artifact_overrides_the_default_handlers(trained, tmp_path, sample, program, env):
    base = _base_with_model(trained, tmp_path)
    (base / "model" / "code").mkdir()
    (base / "model" / "code" / f"{program}.py").write_text(CUSTOM)
    server = Server(base, **env).wait_ready()
    try:
        response = server.invoke(sample[0])
        assert response.json() == {"custom": "004.Akita"}
        assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == "handler=custom"
    finally:
        assert server.stop() < 30
    assert not list((base / "model").rglob("__pycache__")), "nothing may be written into /opt/ml/model"


@pytest.mark.parametrize("source,message", [
    ("def transform_fn(model, data, ct, accept): pass\ndef input_fn(data, ct): pass\n", "cannot be combined"),
    ("def input_fn(data): pass\n", "input_fn must take 2 arguments"),
])
def test_a_broken_handler_module_is_a_startup_error(trained, tmp_path, source, message):
    base = _base_with_model(trained, tmp_path)
    (base / "model" / "code").mkdir()
    (base / "model" / "code" / "inference.py").write_text(source)
    assert message in _start_error(base)


def test_a_missing_sagemaker_program_is_a_startup_error(trained, tmp_path):
    assert "SAGEMAKER_PROGRAM=nope.py" in _start_error(_base_with_model(trained, tmp_path),
                                                       SAGEMAKER_PROGRAM="nope.py")


def test_model_data_url_is_fetched_from_s3_and_unpacked(trained, tmp_path, sample, s3_env):
    s3 = s3_client(s3_env)
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="job-1/output/model.tar.gz", Body=tarball(trained[0]))
    env = {k: s3_env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                  "AWS_DEFAULT_REGION")}
    scratch = tmp_path / "tmp"  # the fetched copies go under TMPDIR and are removed when serve ends
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    server = Server(tmp_path / "empty", MODEL_DATA_URL="s3://models/job-1/output/model.tar.gz", **env).wait_ready()
    try:
        assert max(range(10), key=server.invoke(sample[0]).json()[0].__getitem__) == sample[1]
        assert len(list(scratch.glob("dogops-model-*"))) == 1
    finally:
        server.stop()
    assert not list(scratch.glob("dogops-model-*"))
    evils = ("../escape.txt", "/etc/evil", "link")
    for number, evil in enumerate(evils):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            member = tarfile.TarInfo(evil)
            if evil == "link":
                member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(member)
            else:
                member.size = 2
                tar.addfile(member, io.BytesIO(b"hi"))
        s3.put_object(Bucket="models", Key=f"evil-{number}.tar.gz", Body=buffer.getvalue())
    # Each refusal is a `serve` start of its own (torch imported, then the error): started side by side.
    urls = ["s3://models/nope.tar.gz", *(f"s3://models/evil-{number}.tar.gz" for number in range(len(evils)))]
    with ThreadPoolExecutor(len(urls)) as pool:
        missing, *refused = pool.map(lambda url: _start_error(tmp_path / "empty", MODEL_DATA_URL=url, **env), urls)
    assert "cannot fetch MODEL_DATA_URL" in missing
    assert all("is not a safe model.tar.gz" in error for error in refused), refused
    assert not list(scratch.glob("dogops-model-*"))


def test_sigterm_while_busy_finishes_in_flight_work_and_exits_in_time(trained, tmp_path, sample):
    import threading

    server = Server(_base_with_model(trained, tmp_path), SAGEMAKER_MODEL_SERVER_WORKERS="1").wait_ready()
    results = []

    def call():
        try:
            results.append(server.invoke(sample[0]).status_code)
        except requests.ConnectionError:  # queued, never accepted: the listener closed on SIGTERM
            results.append("refused")

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    assert server.stop() < 30
    for t in threads:
        t.join()
    assert server.proc.returncode == 0
    assert results.count(200) >= 1 and set(results) <= {200, "refused"}
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/ping", timeout=2)
