"""The gateway's Lambda ``Invoke`` through a real boto3 ``lambda`` client (contracts §C, §F.5).

A real emulator holds the functions (CreateFunction with zips built here); a real
gateway runs them in its warm workers. One handler module picks its behaviour
from the event's ``action``.
"""

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from dogops.lambda_package import build_zip
from services.stack import settings

from . import processes

APP = b'''
import json, logging, os, sys, time

def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "context":
        cc = context.client_context
        return {"request_id": context.aws_request_id, "function_name": context.function_name,
                "function_version": context.function_version, "memory": context.memory_limit_in_mb,
                "arn": context.invoked_function_arn, "log_group": context.log_group_name,
                "log_stream": context.log_stream_name, "remaining": context.get_remaining_time_in_millis(),
                "cognito": context.identity.cognito_identity_id, "cwd": os.getcwd(), "env": dict(os.environ),
                "custom": cc.custom if cc else None, "app_title": cc.client.app_title if cc and cc.client else None}
    if action == "print":
        print('{"json": "not the reply"}')
        sys.stderr.write("to stderr\\n")
        context.log("via context.log\\n")
        logging.warning("warned")
        return "printed"
    if action == "raise":
        raise ValueError("boom")
    if action == "sleep":
        time.sleep(event["seconds"])
        return "slept"
    if action == "exit":
        os._exit(3)
    if action == "marshal":
        return {1, 2}
    if action == "bytes":
        return b"\\x00raw"
    if action == "touch":
        time.sleep(0.2)
        with open(event["path"], "w") as f:
            f.write(context.aws_request_id)
    if action == "pid":
        time.sleep(event.get("seconds", 0))
        return os.getpid()
    if action == "big":
        return "x" * 6291456
    return {"event": event, "version": VERSION}

VERSION = 1
'''
MAX_WORKERS = 4
NO_RETRIES = {"retries": {"max_attempts": 0}, "read_timeout": 30}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def emulator(log_dir):
    proc = processes.emulator(log_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(log_dir, emulator):
    proc = processes.gateway(log_dir, emulator.url, DOGOPS_LOG_DIR=log_dir, DOGOPS_LAMBDA_MAX_WORKERS=MAX_WORKERS)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def control(emulator):
    """The emulator's Lambda control plane, and the role the functions run as."""
    iam = processes.client("iam", emulator.url)
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="invoke-tests", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    return processes.client("lambda", emulator.url), role


@pytest.fixture(scope="module")
def deploy(control):
    """``deploy(name, files={...}, handler=..., **CreateFunction args)``: the function, once per name."""
    lam, role = control
    deployed = set()

    def deploy(name, files=None, handler="app.handler", concurrency=None, **args):
        if name not in deployed:
            lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler=handler,
                                Code={"ZipFile": build_zip(files or {"app.py": APP})}, **args)
            if concurrency is not None:
                lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)
            deployed.add(name)
        return name

    return deploy


@pytest.fixture(scope="module")
def client(gateway):
    return processes.client("lambda", gateway.url, **NO_RETRIES)


@pytest.fixture(scope="module")
def main(deploy):
    return deploy("main", Timeout=3, MemorySize=256, Environment={"Variables": {"GREETING": "hi"}})


def call(client, name, event=None, **kw):
    """Invoke; the response with ``Payload`` read and, for JSON, decoded."""
    out = client.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}), **kw)
    body = out["Payload"].read()
    out["Body"] = json.loads(body) if body and body[:1] != b"\x00" else body
    return out


def test_success_context_and_environment(client, main, emulator, gateway):
    cc = base64.b64encode(json.dumps({"custom": {"k": "v"}, "client": {"app_title": "tests"}}).encode()).decode()
    out = call(client, main, {"action": "context"}, ClientContext=cc)
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    assert out["ExecutedVersion"] == "$LATEST"
    ctx = out["Body"]
    assert ctx["request_id"] == out["ResponseMetadata"]["RequestId"]
    assert (ctx["function_name"], ctx["function_version"], ctx["memory"]) == ("main", "$LATEST", "256")
    assert ctx["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:main"
    assert ctx["log_group"] == "/aws/lambda/main" and "[$LATEST]" in ctx["log_stream"]
    assert 0 < ctx["remaining"] <= 3000
    assert ctx["cognito"] is None and ctx["custom"] == {"k": "v"} and ctx["app_title"] == "tests"
    env = ctx["env"]
    assert env["GREETING"] == "hi"
    assert env["_HANDLER"] == "app.handler" and env["LAMBDA_TASK_ROOT"] == ctx["cwd"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "main" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == settings.REGION
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12" and env["TZ"] == "UTC"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_ACCESS_KEY_ID"] != settings.ACCESS_KEY and env["AWS_SESSION_TOKEN"]  # the role's, from STS
    assert env["AWS_ENDPOINT_URL"] == emulator.url and env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == gateway.url


def test_prints_go_to_the_log_not_the_reply(client, main):
    out = call(client, main, {"action": "print"}, LogType="Tail")
    assert out["Body"] == "printed"
    tail = base64.b64decode(out["LogResult"]).decode()
    rid = out["ResponseMetadata"]["RequestId"]
    assert tail.startswith(f"START RequestId: {rid} Version: $LATEST")
    for line in ('{"json": "not the reply"}', "to stderr", "via context.log", f"END RequestId: {rid}",
                 f"\t{rid}\twarned", f"REPORT RequestId: {rid}\tDuration: "):
        assert line in tail


def test_workers_stay_warm(client, main):
    assert call(client, main, {"action": "pid"})["Body"] == call(client, main, {"action": "pid"})["Body"]


def test_response_too_large(client, main):
    out = call(client, main, {"action": "big"})
    assert out["FunctionError"] == "Unhandled"
    assert out["Body"]["errorType"] == "Function.ResponseSizeTooLarge"


def test_raw_bytes_and_empty_payload(client, main):
    assert call(client, main, {"action": "bytes"})["Body"] == b"\x00raw"
    out = client.invoke(FunctionName=main)
    assert json.loads(out["Payload"].read())["event"] == {}


def test_event_runs_in_the_background(client, main, tmp_path):
    marker = tmp_path / "touched"
    out = client.invoke(FunctionName=main, InvocationType="Event",
                        Payload=json.dumps({"action": "touch", "path": str(marker)}))
    assert out["StatusCode"] == 202 and out["Payload"].read() == b""
    assert not marker.exists()  # answered before the function ran
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == out["ResponseMetadata"]["RequestId"]


def test_dry_run(client, main):
    out = client.invoke(FunctionName=main, InvocationType="DryRun")
    assert out["StatusCode"] == 204 and out["Payload"].read() == b""


def test_unhandled_exception(client, main):
    out = call(client, main, {"action": "raise"})
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    body = out["Body"]
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "boom"
    assert body["requestId"] == out["ResponseMetadata"]["RequestId"]
    assert body["stackTrace"][0].startswith('  File "') and "app.py" in body["stackTrace"][0]
    assert "awslambdaric" not in "".join(body["stackTrace"])  # the runtime client's own frames are cut


def test_marshal_error(client, main):
    out = call(client, main, {"action": "marshal"})
    assert out["FunctionError"] == "Unhandled"
    assert out["Body"]["errorType"] == "Runtime.MarshalError"
    assert out["Body"]["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_worker_exit_then_a_fresh_worker(client, main):
    out = call(client, main, {"action": "exit"})
    rid = out["ResponseMetadata"]["RequestId"]
    assert out["FunctionError"] == "Unhandled"
    assert out["Body"] == {"errorType": "Runtime.ExitError",
                           "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 3"}
    assert call(client, main, {"x": 1})["Body"] == {"event": {"x": 1}, "version": 1}


def test_timeout_kills_the_worker(client, deploy):
    name = deploy("short", Timeout=1)
    began = time.monotonic()
    out = call(client, name, {"action": "sleep", "seconds": 30})
    assert time.monotonic() - began < 5
    rid = out["ResponseMetadata"]["RequestId"]
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    assert out["Body"] == {"errorType": "Sandbox.Timedout",
                           "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds"}
    assert call(client, name, {"action": "sleep", "seconds": 0})["Body"] == "slept"


BROKEN = {
    "missing-module": ({"app.py": APP}, "nothere.handler", "Runtime.ImportModuleError",
                       "Unable to import module 'nothere': No module named 'nothere'"),
    "bad-import": ({"app.py": b"import not_installed_anywhere\n"}, "app.handler", "Runtime.ImportModuleError",
                   "Unable to import module 'app': No module named 'not_installed_anywhere'"),
    "syntax": ({"app.py": b"def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError",
               "Syntax error in module 'app': invalid syntax (app.py, line 1)"),
    "no-handler": ({"app.py": APP}, "app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    "malformed": ({"app.py": APP}, "app", "Runtime.MalformedHandlerName",
                  "Bad handler 'app': not enough values to unpack (expected 2, got 1)"),
    "raises-at-import": ({"app.py": b"raise RuntimeError('no config')\n"}, "app.handler", "RuntimeError",
                         "no config"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_init_errors(client, deploy, case):
    files, handler, error_type, message = BROKEN[case]
    out = call(client, deploy(case, files=files, handler=handler), LogType="Tail")
    assert f"[ERROR] {error_type}: {message}" in base64.b64decode(out["LogResult"]).decode()
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    assert out["Body"]["errorType"] == error_type
    assert out["Body"]["errorMessage"] == message
    assert out["Body"]["requestId"] == ""


def test_unknown_function(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.invoke(FunctionName="nobody", Payload=b"{}")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404 and response["Type"] == "User"
    assert response["Error"]["Message"] == "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nobody"


def test_payload_not_json(client, main):
    with pytest.raises(client.exceptions.InvalidRequestContentException) as caught:
        client.invoke(FunctionName=main, Payload=b"{not json")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.response["Error"]["Message"].startswith("Could not parse request body into json")


@pytest.mark.parametrize("invocation_type, size", [("RequestResponse", 6291456), ("Event", 1048576)])
def test_payload_too_large(client, main, invocation_type, size):
    payload = json.dumps("x" * (size - 1)).encode()  # size + 1 bytes
    with pytest.raises(client.exceptions.RequestTooLargeException) as caught:
        client.invoke(FunctionName=main, InvocationType=invocation_type, Payload=payload)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_reserved_concurrency_throttles(client, deploy):
    name = deploy("reserved", concurrency=3, Timeout=10)

    start = threading.Barrier(20)

    def one(_):
        start.wait()
        try:
            return call(client, name, {"action": "sleep", "seconds": 0.5})["StatusCode"]
        except ClientError as e:
            assert e.response["Error"]["Code"] == "TooManyRequestsException"
            assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
            assert e.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
            return e.response["ResponseMetadata"]["HTTPStatusCode"]

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(one, range(20)))
    assert set(statuses) == {200, 429}
    assert 3 <= statuses.count(200) <= 9  # 3 at a time, and a few more as the first ones finish


def test_without_reservation_calls_wait_for_a_worker(client, deploy):
    name = deploy("unreserved")
    began = time.monotonic()
    with ThreadPoolExecutor(2 * MAX_WORKERS) as pool:
        outs = list(pool.map(lambda _: call(client, name, {"action": "pid", "seconds": 0.3}), range(2 * MAX_WORKERS)))
    assert [out["StatusCode"] for out in outs] == [200] * 2 * MAX_WORKERS
    assert len({out["Body"] for out in outs}) <= MAX_WORKERS
    assert time.monotonic() - began >= 0.6  # two rounds


def test_update_function_code_takes_effect(client, control, deploy):
    lam, _ = control
    name = deploy("updated")
    assert call(client, name)["Body"]["version"] == 1
    lam.update_function_code(FunctionName=name, ZipFile=build_zip({"app.py": APP.replace(b"VERSION = 1",
                                                                                        b"VERSION = 2")}))
    deadline = time.monotonic() + 5  # as on AWS, the update applies after a moment
    while call(client, name)["Body"]["version"] != 2:
        assert time.monotonic() < deadline, "the new code never ran"
        time.sleep(0.2)


@pytest.mark.parametrize("how", ["arn", "latest", "qualifier", "partial-arn"])
def test_invoke_by_arn_and_qualifier(client, main, how):
    arn = f"arn:aws:lambda:{settings.REGION}:{settings.ACCOUNT}:function:{main}"
    kw = {"arn": {"name": arn}, "latest": {"name": f"{main}:$LATEST"},
          "qualifier": {"name": arn, "Qualifier": "$LATEST"},
          "partial-arn": {"name": f"{settings.ACCOUNT}:function:{main}"}}[how]
    out = call(client, kw.pop("name"), {"n": 1}, **kw)
    assert out["StatusCode"] == 200 and out["Body"]["event"] == {"n": 1}


def test_logs_are_written_per_worker(log_dir, client, main):
    call(client, main, {"action": "print"})
    logs = list((log_dir / "lambda" / main).glob("*.log"))
    assert logs and any("via context.log" in p.read_text() for p in logs)
