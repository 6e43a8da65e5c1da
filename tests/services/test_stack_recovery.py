"""The native stack keeps what a user made across an emulator SIGKILL and ``dogops down`` + ``up``, and forgets it
with ``up --fresh``: a bucket and its object, a role, a function, an endpoint on the stack's model (hosted again,
answering through the gateway), and the stack's own Lambda path (whose warm workers held credentials of the dead
emulator)."""

import json
import os
import shlex
import signal
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from services.stack import bootstrap

from .test_native_stack import _invoke, dogops, native, state, wait_for  # noqa: F401 (native: the fixture)

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _clients(exports: dict) -> dict:
    session = boto3.Session(aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    emulator, gateway = exports["AWS_ENDPOINT_URL"], exports["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
    return {name: session.client(name, endpoint_url=emulator) for name in ("s3", "iam", "lambda", "sagemaker")} | {
        "runtime": session.client("sagemaker-runtime", endpoint_url=gateway)}


def _create(aws: dict, photo: bytes) -> dict:
    aws["s3"].create_bucket(Bucket="user-bucket")
    aws["s3"].put_object(Bucket="user-bucket", Key="notes/a.txt", Body=b"kept")
    role = aws["iam"].create_role(RoleName="user-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    from dogops.lambda_package import build_zip

    aws["lambda"].create_function(FunctionName="user-function", Runtime="python3.12", Role=role,
                                  Handler="app.handler", Code={"ZipFile": build_zip({"app.py": b"def handler(e, c):\n"
                                                                                                b"    return e\n"})})
    model = aws["sagemaker"].describe_model(ModelName=aws["sagemaker"].describe_endpoint_config(
        EndpointConfigName=aws["sagemaker"].describe_endpoint(EndpointName="dogops")["EndpointConfigName"])[
        "ProductionVariants"][0]["ModelName"])
    aws["sagemaker"].create_model(ModelName="user-model", ExecutionRoleArn=model["ExecutionRoleArn"],
                                  PrimaryContainer=model["PrimaryContainer"])
    aws["sagemaker"].create_endpoint_config(EndpointConfigName="user-config", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "user-model", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    aws["sagemaker"].create_endpoint(EndpointName="user-endpoint", EndpointConfigName="user-config")
    return _read(aws, photo)


def _read(aws: dict, photo: bytes) -> dict:
    """What the user made, as the clients read it back (the endpoint waited for and asked for a prediction)."""
    wait_for(lambda: aws["sagemaker"].describe_endpoint(EndpointName="user-endpoint")["EndpointStatus"] == "InService",
             300, "user-endpoint not in service")
    answer = aws["runtime"].invoke_endpoint(EndpointName="user-endpoint", ContentType="image/jpeg", Body=photo)
    strip = lambda d: {k: v for k, v in d.items() if k != "ResponseMetadata"}  # noqa: E731
    return {"object": aws["s3"].get_object(Bucket="user-bucket", Key="notes/a.txt")["Body"].read(),
            "role": strip(aws["iam"].get_role(RoleName="user-role")),
            "function": strip(aws["lambda"].get_function(FunctionName="user-function"))["Configuration"],
            "prediction": json.loads(answer["Body"].read())}


def _answers(aws: dict, photo: bytes) -> bool:
    try:
        aws["runtime"].invoke_endpoint(EndpointName="dogops", ContentType="image/jpeg", Body=photo)
        return True
    except (ClientError, BotoCoreError):
        return False


def _lambda_workers(gateway: int) -> list[int]:
    """The gateway's Lambda worker processes: its descendants (under gunicorn's worker) that are no gateway."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [gateway]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += [pid for pid in children if b"services.gateway" not in commands[pid]
                  and b"gunicorn" not in commands[pid]]
        frontier = children
    return found


@pytest.mark.slow
def test_what_the_user_made_survives_an_emulator_kill_and_down_up_and_fresh_forgets_it(native):  # noqa: F811
    up = dogops(native, "up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    exports = dict(shlex.split(line)[1].split("=", 1) for line in dogops(native, "env").stdout.splitlines())
    user = {**exports, "PATH": native["PATH"], "HOME": native.get("HOME", "/tmp")}
    dog = exports["DOGOPS_SAMPLES_URL"] + "/dog.jpg"
    photo = (Path(native["DOGOPS_STATE_DIR"]) / "samples" / "dog.jpg").read_bytes()
    aws = _clients(exports)
    made = _create(aws, photo)
    result, ranked = _invoke(user, "--url", dog)  # the stack's Lambda path: warm workers now hold credentials
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr

    before = state(native)
    killed = time.monotonic()
    os.kill(before["children"]["emulator"], signal.SIGKILL)
    after = wait_for(lambda: (s := state(native))["restarts"].get("emulator") == 1 and s["phase"] == "ready" and s,
                     300, "the emulator was not brought back")
    print(f"emulator SIGKILL -> stack ready again: {time.monotonic() - killed:.1f} s")
    assert after["children"]["emulator"] != before["children"]["emulator"]
    assert _read(aws, photo) == made
    print(f"emulator SIGKILL -> user endpoint answering again: {time.monotonic() - killed:.1f} s")
    result, ranked = _invoke(user, "--url", dog)  # at once: the gateway renewed its workers' credentials
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr

    for name in ("gateway", "serving"):  # the supervisor restarts the gateway; the emulator replaces a serve
        pid, killed = state(native)["children"][name], time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=name, p=pid: state(native)["children"].get(n) not in (None, p) and _answers(aws, photo),
                 120, f"{name} was not replaced")
        print(f"{name} SIGKILL -> the stack's endpoint answering through the gateway again: "
              f"{time.monotonic() - killed:.1f} s")
    result, ranked = _invoke(user, "--url", dog)  # the new gateway's first: a warm worker
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr
    workers = _lambda_workers(state(native)["children"]["gateway"])
    assert workers, "no warm Lambda worker under the gateway"
    os.kill(workers[0], signal.SIGKILL)
    killed = time.monotonic()
    result, ranked = _invoke(user, "--url", dog)  # the runtime starts another worker
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr
    print(f"Lambda worker SIGKILL -> next invocation answered in {time.monotonic() - killed:.1f} s")

    assert dogops(native, "down").returncode == 0
    again = dogops(native, "up", timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _read(aws, photo) == made
    result, ranked = _invoke(user, "--url", dog)
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr

    assert dogops(native, "down").returncode == 0
    fresh = dogops(native, "up", "--fresh", timeout=900)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    with pytest.raises(ClientError, match="NoSuchBucket"):
        aws["s3"].list_objects_v2(Bucket="user-bucket")
    assert aws["s3"].head_object(Bucket="dogops-local", Key=bootstrap.MODEL_KEY)  # the stack's own, published again
    result, ranked = _invoke(user, "--url", dog)
    assert result.returncode == 0 and len(ranked) == 5, result.stdout + result.stderr
