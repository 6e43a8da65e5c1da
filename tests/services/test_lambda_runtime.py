"""Lambda functions as Lambda's Python runtime runs them (issue 16, points 1, 2, 6), through real boto3 clients:
AWS's runtime client (awslambdaric) marshals, the package alone is importable, the Runtime API answers its
runtime only, and the logs reach the emulator's CloudWatch Logs as AWS names and writes them."""

import base64
import json
import re
import time

import pytest
import requests

from dogops.lambda_package import build_zip
from services.gateway import lambda_interpreters
from services.gateway.lambda_sandbox import CAN_CONTAIN, INTERPRETER

from . import processes

APP = b'''
import decimal, json, logging, os, stat, sys

def handler(event, context):
    action = event.get("action")
    if action == "decimal":
        return {"price": decimal.Decimal("1.50"), "count": decimal.Decimal("3")}
    if action == "package":
        import boto3
        root = os.environ["LAMBDA_TASK_ROOT"]
        return {"boto3": boto3.__version__, "path": sys.path, "flags": [sys.flags.isolated, sys.flags.no_site],
                "app_mode": stat.S_IMODE(os.stat(os.path.join(root, "app.py")).st_mode),
                "root_mode": stat.S_IMODE(os.stat(root).st_mode), "tmp": os.environ["TMPDIR"]}
    if action == "api":
        return os.environ["AWS_LAMBDA_RUNTIME_API"]
    if action == "log":
        print("printed line")
        logging.getLogger().warning("logged %s", "warning")
        return "logged"
    return event
'''


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    emulator = processes.emulator(logs)
    gateway = processes.gateway(logs, emulator.url, DOGOPS_LOG_DIR=logs)
    yield emulator, gateway
    gateway.stop()
    emulator.stop()


@pytest.fixture(scope="module")
def deploy(stack):
    emulator, _ = stack
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    role = processes.client("iam", emulator.url).create_role(
        RoleName="runtime-tests", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    lam = processes.client("lambda", emulator.url)

    def deploy(name, files=None, runtime=INTERPRETER, **args):
        lam.create_function(FunctionName=name, Runtime=runtime, Role=role, Handler="app.handler",
                            Code={"ZipFile": build_zip(files or {"app.py": APP})}, Timeout=10, **args)
        return name

    return deploy


@pytest.fixture(scope="module")
def client(stack):
    return processes.client("lambda", stack[1].url, retries={"max_attempts": 0}, read_timeout=30)


@pytest.fixture(scope="module")
def logs(stack):
    return processes.client("logs", stack[0].url)


def call(client, name, event, **kw):
    out = client.invoke(FunctionName=name, Payload=json.dumps(event), **kw)
    out["Body"] = json.loads(out["Payload"].read())
    if "LogResult" in out:
        out["Tail"] = base64.b64decode(out["LogResult"]).decode()
    return out


def events(logs, group: str, until: str, timeout: float = 10) -> list[dict]:
    """The group's events once one contains ``until`` (the writer sends every half second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = logs.filter_log_events(logGroupName=group)["events"]
        except logs.exceptions.ResourceNotFoundException:
            found = []
        if any(until in e["message"] for e in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_runtime_client_marshals_decimals(client, deploy):
    out = call(client, deploy("decimals"), {"action": "decimal"})
    assert "FunctionError" not in out and out["Body"] == {"price": 1.5, "count": 3}


@pytest.mark.parametrize("module", ["requests", "dogops", "numpy"])
def test_an_import_the_package_lacks_fails_as_on_aws(client, deploy, module):
    name = deploy(f"lacks-{module}", files={"app.py": f"import {module}\ndef handler(e, c):\n    return 1\n".encode()})
    out = call(client, name, {})
    assert out["FunctionError"] == "Unhandled"
    assert out["Body"]["errorType"] == "Runtime.ImportModuleError"
    assert out["Body"]["errorMessage"] == f"Unable to import module 'app': No module named '{module}'"


def test_the_package_with_its_own_dependency_imports_it(client, deploy):
    files = {"app.py": b"import vendored\ndef handler(e, c):\n    return vendored.VALUE\n",
             "vendored/__init__.py": b"VALUE = 'from the package'\n"}
    assert call(client, deploy("vendoring", files=files), {})["Body"] == "from the package"


def test_the_package_alone_with_the_runtimes_boto3(client, deploy):
    import boto3

    out = call(client, deploy("package"), {"action": "package"})["Body"]
    assert out["boto3"] == boto3.__version__
    assert out["flags"] == [1, 1]  # isolated, no site: no PYTHONPATH, no site-packages of the machine
    task_root = out["path"][0]
    assert not any("site-packages" in p and "/opt/" not in p for p in out["path"]), out["path"]
    assert out["app_mode"] & 0o222 == 0 and out["root_mode"] & 0o222 == 0  # read-only task root
    assert out["tmp"] != "/tmp" and task_root not in out["tmp"]


def test_the_runtime_api_answers_its_runtime_only(client, deploy):
    address = call(client, deploy("api"), {"action": "api"})["Body"]
    host, port = address.split(":")
    assert host == "127.0.0.1"
    url = f"http://{address}/2018-06-01/runtime/invocation/next"
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site"},
                    {"Host": f"rebound.example:{port}"}):
        response = requests.get(url, headers=headers, timeout=5)
        assert response.status_code == 403, headers
        assert response.json()["errorType"] == "Forbidden"
    forged = requests.post(f"http://{address}/2018-06-01/runtime/invocation/x/response", data=b"1",
                           headers={"Origin": "http://evil.example"}, timeout=5)
    assert forged.status_code == 403
    assert call(client, "api", {"action": "api"})["Body"] == address  # the worker still answers


def test_logs_in_cloudwatch_as_aws_writes_them(client, deploy, logs):
    name = deploy("logged")
    first = call(client, name, {"action": "log"}, LogType="Tail")
    second = call(client, name, {"action": "log"}, LogType="Tail")
    rids = [out["ResponseMetadata"]["RequestId"] for out in (first, second)]
    assert re.search(rf"REPORT RequestId: {rids[0]}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     rf"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: [\d.]+ ms\t\n$", first["Tail"])
    assert re.search(rf"REPORT RequestId: {rids[1]}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     rf"Memory Size: 128 MB\tMax Memory Used: \d+ MB\t\n$", second["Tail"])  # warm: no init
    assert rids[0] not in second["Tail"]  # the tail is this invocation's
    found = events(logs, f"/aws/lambda/{name}", f"REPORT RequestId: {rids[1]}")
    messages = [e["message"] for e in found]
    streams = {e["logStreamName"] for e in found}
    assert len(streams) == 1 and re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", streams.pop())
    for rid in rids:
        lines = [m for m in messages if rid in m or m in ("printed line\n",)]
        assert f"START RequestId: {rid} Version: $LATEST\n" in lines and f"END RequestId: {rid}\n" in lines
    assert messages.count("printed line\n") == 2
    assert sum(m.startswith("[WARNING]\t") and m.endswith(f"\t{rids[0]}\tlogged warning\n") for m in messages) == 1


def test_json_log_format(client, deploy):
    name = deploy("json-logs", Environment={"Variables": {"AWS_LAMBDA_LOG_FORMAT": "JSON"}})
    out = call(client, name, {"action": "log"}, LogType="Tail")
    logged = [json.loads(line) for line in out["Tail"].splitlines() if line.startswith("{")]
    assert [(e["level"], e["message"], e["requestId"]) for e in logged] == [
        ("WARNING", "logged warning", out["ResponseMetadata"]["RequestId"])]


NO_INTERPRETER = "python3.14"  # a Lambda runtime with no venv here (lambda_interpreters.MINORS stops at 3.13)


def test_a_runtime_mismatch_is_stated_once(client, deploy, logs):
    name = deploy("mismatch", runtime=NO_INTERPRETER)
    call(client, name, {})
    call(client, name, {})
    found = events(logs, f"/aws/lambda/{name}", NO_INTERPRETER)
    stated = [e["message"] for e in found if f"configured for {NO_INTERPRETER}" in e["message"]]
    assert stated == [f"dogops: this function is configured for {NO_INTERPRETER}; the local stack has no "
                      f"{NO_INTERPRETER} with the Lambda runtime client (make setup makes one where pyenv has that "
                      f"Python), so {INTERPRETER} runs it\n"]


@pytest.mark.skipif(lambda_interpreters.python("python3.12") is None,
                    reason="no python3.12 Lambda venv: make setup makes .venv-lambda/python3.12 where pyenv has 3.12, "
                           "and this machine has none")
def test_a_python312_function_runs_on_python312(client, deploy, logs, stack):
    import boto3

    files = {"app.py": b"import sys, boto3\ndef handler(e, c):\n"
                       b"    return {'version': list(sys.version_info[:2]), 'boto3': boto3.__version__}\n"}
    name = deploy("on-312", files=files, runtime="python3.12")
    out = call(client, name, {}, LogType="Tail")
    assert out["Body"] == {"version": [3, 12], "boto3": boto3.__version__}  # the lock's boto3, at the dev lock's
    assert "configured for" not in out["Tail"]
    assert not [m for m in requests.get(f"{stack[1].url}/_dogops/lambda/mismatches", timeout=5).json()["mismatches"]
                if m["function"] == name]


def test_a_layer_provides_what_the_package_lacks(client, deploy, stack):
    lam = processes.client("lambda", stack[0].url)
    first = lam.publish_layer_version(LayerName="helpers", Content={"ZipFile": build_zip({
        "python/helper.py": b"WHO = 'layer 1'\n",
        f"python/lib/{INTERPRETER}/site-packages/sitepkg.py": b"WHO = 'site-packages of layer 1'\n"})})
    second = lam.publish_layer_version(LayerName="override", Content={"ZipFile": build_zip({
        "python/helper.py": b"WHO = 'layer 2'\n"})})
    files = {"app.py": b"import helper, sitepkg\ndef handler(e, c):\n    return [helper.WHO, sitepkg.WHO]\n"}
    lacking = call(client, deploy("no-layer", files=files), {})
    assert lacking["Body"]["errorType"] == "Runtime.ImportModuleError"
    one = deploy("one-layer", files=files, Layers=[first["LayerVersionArn"]])
    assert call(client, one, {})["Body"] == ["layer 1", "site-packages of layer 1"]
    both = deploy("two-layers", files=files, Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
    assert call(client, both, {})["Body"] == ["layer 2", "site-packages of layer 1"]  # the later layer's file wins


def test_a_function_over_its_memory_is_killed_as_on_aws(client, deploy):
    files = {"app.py": b"def handler(e, c):\n    hog = bytearray(e['mb'] * 1024 * 1024)\n    return len(hog)\n"}
    name = deploy("hog", files=files, MemorySize=128)
    assert call(client, name, {"mb": 16})["Body"] == 16 * 1024 * 1024
    out = call(client, name, {"mb": 400}, LogType="Tail")
    rid = out["ResponseMetadata"]["RequestId"]
    assert out["FunctionError"] == "Unhandled"
    assert out["Body"] == {"errorType": "Runtime.OutOfMemory",
                           "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed"}
    assert re.search(rf"REPORT RequestId: {rid}\t.*\tMemory Size: 128 MB\tMax Memory Used: 128 MB\t"
                     rf"Status: error\tError Type: Runtime.OutOfMemory\t\n$", out["Tail"]), out["Tail"]
    assert call(client, name, {"mb": 16})["Body"] == 16 * 1024 * 1024  # a new worker serves the next call


def test_dogops_status_states_the_mismatch(client, deploy, stack, monkeypatch):
    from dogops.stack_cli import lambda_mismatches

    call(client, deploy("mismatched", runtime=NO_INTERPRETER), {})
    call(client, deploy("matched"), {})
    monkeypatch.setenv("DOGOPS_GATEWAY_URL", stack[1].url)
    found = lambda_mismatches()
    assert {"function": "mismatched", "runtime": NO_INTERPRETER, "runs_on": INTERPRETER} in found
    assert not [m for m in found if m["function"] == "matched"]


def test_the_environment_is_limited_to_4_kb(deploy, stack):
    lam = processes.client("lambda", stack[0].url)
    fits = {"A": "x" * (4096 - len('{"A":""}'))}  # exactly 4096 bytes as compact JSON
    name = deploy("env-limit", Environment={"Variables": fits})
    over = {"A": "x" * (4097 - len('{"A":""}'))}
    for call_ in (lambda: lam.update_function_configuration(FunctionName=name, Environment={"Variables": over}),
                  lambda: deploy("env-over", Environment={"Variables": over})):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
            call_()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert caught.value.response["Error"]["Message"] == (
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {json.dumps(over, separators=(',', ':'))}")
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == fits


SANDBOXED = b'''
import errno, os

def handler(event, context):
    answers = {}
    for where in (os.environ["LAMBDA_TASK_ROOT"] + "/new.txt", "new.txt"):
        try:
            open(where, "w").close()
            answers[where] = "written"
        except OSError as e:
            answers[where] = errno.errorcode[e.errno]
    path, written = os.path.join(os.environ["TMPDIR"], "fill"), 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"\\0" * (1 << 20))
                f.flush()
                written += 1
    except OSError as e:
        answers["tmp"] = [errno.errorcode[e.errno], written]
    finally:
        os.remove(path)
    return answers
'''


@pytest.mark.skipif(not CAN_CONTAIN, reason="this machine lets no process mount in a namespace of its own")
def test_read_only_task_root_and_ephemeral_storage_size(client, deploy):
    name = deploy("sandboxed", files={"app.py": SANDBOXED}, EphemeralStorage={"Size": 512}, MemorySize=256)
    answers = call(client, name, {})["Body"]
    tmp = answers.pop("tmp")
    assert set(answers.values()) == {"EROFS"}, answers  # "Read-only file system", as /var/task on Lambda
    assert tmp == ["ENOSPC", 512]  # MB written when TMPDIR is full: its EphemeralStorage size
