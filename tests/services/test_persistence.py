"""The emulator's state across a SIGKILL and a restart (``services.emulator.persistence``): the journal on disk
(torn writes, a writer killed at random moments, compaction) and a real emulator process killed and started again,
checked through boto3."""

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from dogops.lambda_package import build_zip
from services.emulator.persistence import Journal, compact, mutating
from services.gateway import lambda_runtime
from services.jobs import training
from services.security.sigv4 import RootAuth
from services.stack.settings import routes_url

from . import processes

# -- the journal ----------------------------------------------------------------------------------------------------


def test_a_torn_last_record_is_dropped_and_cut_off(tmp_path):
    journal = Journal(tmp_path)
    journal.append({"type": "request", "n": 1}, b"small body")
    journal.append({"type": "request", "n": 2}, b"x" * 100_000)
    with open(journal.path, "ab") as out:
        out.write(b'{"type": "request", "n": 3, "bo')  # killed in the middle of the third write
    records = Journal(tmp_path).records()
    assert [r["n"] for r in records] == [1, 2]
    assert Journal(tmp_path).body(records[1]) == b"x" * 100_000
    assert journal.path.read_bytes().endswith(b"\n")  # the torn bytes are gone: the next append starts clean
    again = Journal(tmp_path)
    again.append({"type": "request", "n": 4})
    assert [r["n"] for r in Journal(tmp_path).records()] == [1, 2, 4]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from services.emulator.persistence import Journal
    journal, n = Journal(Path(sys.argv[1])), 0
    while True:
        n += 1
        journal.append({"type": "request", "n": n}, bytes([n % 251]) * (n * 997 % 60_000))
""")


@pytest.mark.parametrize("after", [0.15, 0.4, 0.9])
def test_a_writer_killed_at_any_moment_leaves_every_complete_record(tmp_path, after):
    """SIGKILL a process appending records (bodies inline and as blobs) at an arbitrary moment: what loads is a
    prefix 1..n of what it wrote, each body intact."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=processes.ROOT)
    time.sleep(after)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    journal = Journal(tmp_path)
    records = journal.records()
    assert [r["n"] for r in records] == list(range(1, len(records) + 1))
    for record in records:
        n = record["n"]
        assert journal.body(record) == bytes([n % 251]) * (n * 997 % 60_000)
    journal.append({"type": "request", "n": len(records) + 1})
    assert len(Journal(tmp_path).records()) == len(records) + 1


def _s3(method: str, path: str, query: str = "", **headers) -> dict:
    return {"type": "request", "environ": {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request", **headers}}


def test_compaction_keeps_the_last_write_of_each_object_and_whatever_a_copy_may_read():
    records = [_s3("PUT", "/b"), _s3("PUT", "/b/k", n=1), _s3("PUT", "/b/k", n=2), _s3("PUT", "/b/gone"),
               _s3("DELETE", "/b/gone"), _s3("PUT", "/c/k"), _s3("PUT", "/d/k", HTTP_X_AMZ_COPY_SOURCE="c/k"),
               _s3("PUT", "/c/k"), _s3("PUT", "/v", "versioning"), _s3("PUT", "/v/k"), _s3("PUT", "/v/k")]
    kept = compact(records)
    assert [r["environ"]["PATH_INFO"] for r in kept] == ["/b", "/b/k", "/b/gone", "/c/k", "/d/k", "/c/k", "/v",
                                                        "/v/k", "/v/k"]
    assert [r["environ"].get("n") for r in kept][1] == 2
    assert [r["environ"]["REQUEST_METHOD"] for r in kept][2] == "DELETE"


@pytest.mark.parametrize(("method", "path", "target", "form", "expected"), [
    ("PUT", "/bucket/key", None, "", True),
    ("GET", "/bucket/key", None, "", False),
    ("POST", "/", None, "Action=CreateRole&RoleName=r", True),
    ("POST", "/", None, "Action=ListRoles", False),
    ("POST", "/", None, "Action=AssumeRole&RoleArn=x", False),
    ("POST", "/", "SageMaker.CreateEndpoint", "", True),
    ("POST", "/", "SageMaker.DescribeEndpoint", "", False),
    ("POST", "/2015-03-31/functions/f/invocations", None, "", False),
    ("POST", "/service/GraniteServiceVersion20100801/operation/PutMetricData", None, "", False),
    ("POST", "/service/GraniteServiceVersion20100801/operation/PutMetricAlarm", None, "", True),
    ("POST", "/", "Logs_20140328.PutLogEvents", "", True),
])
def test_what_is_journaled(method, path, target, form, expected):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path,
               "CONTENT_TYPE": "application/x-www-form-urlencoded" if form else "application/x-amz-json-1.1"}
    if target:
        environ["HTTP_X_AMZ_TARGET"] = target
    assert mutating(environ, form.encode()) is expected


# -- a real emulator, killed and started again ------------------------------------------------------------------------

TRUST = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                   "Action": "sts:AssumeRole"}]})
BIG = bytes(range(256)) * 4096  # 1 MiB: a blob on disk


def _restart(emulator, log_dir, state, **env):
    emulator.proc.send_signal(signal.SIGKILL)
    emulator.proc.wait()
    return processes.Process("services.emulator", log_dir, emulator.port, DOGOPS_EMULATOR_STATE_DIR=state, **env)


def _training_job(sm, name: str, role: str) -> None:
    sm.create_training_job(
        TrainingJobName=name, RoleArn=role, AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://persisted-bucket/out"}, StoppingCondition={"MaxRuntimeInSeconds": 60},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1})


def _snapshot(url: str) -> dict:
    s3, iam, lam, sm = (processes.client(s, url) for s in ("s3", "iam", "lambda", "sagemaker"))
    strip = lambda answer: {k: v for k, v in answer.items() if k != "ResponseMetadata"}  # noqa: E731
    endpoint = strip(sm.describe_endpoint(EndpointName="persisted-endpoint"))
    for key in ("EndpointStatus", "LastModifiedTime", "ProductionVariants"):  # hosted again: Creating, then later
        endpoint.pop(key)
    return {
        "objects": s3.list_objects_v2(Bucket="persisted-bucket")["Contents"],
        "big": hashlib.sha256(s3.get_object(Bucket="persisted-bucket", Key="big.bin")["Body"].read()).hexdigest(),
        "multi": s3.head_object(Bucket="persisted-bucket", Key="multi.bin")["ETag"],
        "small": s3.get_object(Bucket="persisted-bucket", Key="dir/small.txt")["Body"].read(),
        "buckets": strip(s3.list_buckets())["Buckets"],
        "role": strip(iam.get_role(RoleName="persisted-role")),
        "policy": strip(iam.get_role_policy(RoleName="persisted-role", PolicyName="read")),
        "keys": strip(iam.list_access_keys(UserName="persisted-user")),
        "function": strip(lam.get_function(FunctionName="persisted-function"))["Configuration"],
        "model": strip(sm.describe_model(ModelName="persisted-model")),
        "config": strip(sm.describe_endpoint_config(EndpointConfigName="persisted-config")),
        "endpoint": endpoint,
        "route": requests.get(routes_url(url, "us-east-1", "persisted-endpoint"), auth=RootAuth(), timeout=5).json(),
        "done": strip(sm.describe_training_job(TrainingJobName="persisted-done")),
    }


def test_state_survives_sigkill_and_fresh_starts_empty(tmp_path, monkeypatch):
    """Bucket and objects (one uploaded in parts), role with its policy, user with its access key, function, model,
    config, endpoint, a finished training job: all there, the same, after a SIGKILL and a restart (twice); the
    access key still signs; the finished job is not run again; a job the kill interrupted is Failed; an empty state folder is an
    empty emulator."""
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    emulator = processes.Process("services.emulator", logs, None, DOGOPS_EMULATOR_STATE_DIR=state,
                                 DOGOPS_TRAINING_RUNNER="host")
    try:
        s3, iam, lam, sm = (processes.client(s, emulator.url) for s in ("s3", "iam", "lambda", "sagemaker"))
        s3.create_bucket(Bucket="persisted-bucket")
        s3.put_object(Bucket="persisted-bucket", Key="big.bin", Body=BIG)
        (tmp_path / "multi.bin").write_bytes(BIG * 11)  # 11 MiB in three parts, sent in parallel
        s3.upload_file(str(tmp_path / "multi.bin"), "persisted-bucket", "multi.bin",
                       Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
        s3.put_object(Bucket="persisted-bucket", Key="dir/small.txt", Body=b"first")
        s3.put_object(Bucket="persisted-bucket", Key="dir/small.txt", Body=b"second")
        s3.put_object(Bucket="persisted-bucket", Key="deleted", Body=b"x")
        s3.delete_object(Bucket="persisted-bucket", Key="deleted")
        role = iam.create_role(RoleName="persisted-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        iam.put_role_policy(RoleName="persisted-role", PolicyName="read", PolicyDocument=json.dumps({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        iam.create_user(UserName="persisted-user")
        iam.put_user_policy(UserName="persisted-user", PolicyName="list", PolicyDocument=json.dumps({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="persisted-user")["AccessKey"]
        lam.create_function(FunctionName="persisted-function", Runtime="python3.12", Role=role, Handler="app.handler",
                            Code={"ZipFile": build_zip({"app.py": b"def handler(e, c):\n    return e\n"})})
        sm.create_model(ModelName="persisted-model", ExecutionRoleArn=role,
                        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://persisted-bucket/big.bin"})
        sm.create_endpoint_config(EndpointConfigName="persisted-config", ProductionVariants=[{
            "VariantName": "v", "ModelName": "persisted-model", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName="persisted-endpoint", EndpointConfigName="persisted-config")
        processes.route(emulator.url, "persisted-endpoint", "http://127.0.0.1:9")  # hosted elsewhere (compose)
        _training_job(sm, "persisted-done", role)
        _training_job(sm, "persisted-running", role)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", emulator.url)  # a host runner's session, as the stack's
        session = boto3.Session(aws_access_key_id=processes.settings.ACCESS_KEY,
                                aws_secret_access_key=processes.settings.root_secret(), region_name="us-east-1")
        assert training.claim(session, "TrainingJob", "persisted-done")
        report = training.remote_report(session, "TrainingJob", "persisted-done")
        report("InProgress", "Training", "Training in progress.")
        report("Completed", "Completed", "Training job completed", billable_time_in_seconds=7,
               model_artifacts={"S3ModelArtifacts": "s3://persisted-bucket/out/model.tar.gz"})
        before = _snapshot(emulator.url)
        assert before["done"]["TrainingJobStatus"] == "Completed"

        for _ in range(2):
            emulator = _restart(emulator, logs, state)
            assert _snapshot(emulator.url) == before
        sm = processes.client("sagemaker", emulator.url)
        running = sm.describe_training_job(TrainingJobName="persisted-running")
        assert running["TrainingJobStatus"] == "Failed"
        assert "emulator stopped while this job ran" in running["FailureReason"]
        user_s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1",
                               aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        assert user_s3.list_objects_v2(Bucket="persisted-bucket")["KeyCount"] == 3  # the user's key still signs
    finally:
        emulator.stop()

    fresh = processes.Process("services.emulator", logs, None, DOGOPS_EMULATOR_STATE_DIR=tmp_path / "empty")
    try:
        assert processes.client("s3", fresh.url).list_buckets()["Buckets"] == []
        with pytest.raises(ClientError):
            processes.client("iam", fresh.url).get_role(RoleName="persisted-role")
    finally:
        fresh.stop()


def test_while_the_emulator_is_down_the_gateway_answers_aws_errors_at_once_then_serves_again(tmp_path):
    """The emulator SIGKILLed: through the gateway, Lambda's Invoke and a control-plane call it passes on fail at
    once with ServiceUnavailable (boto3 parses it); restarted on its state, the same function answers again."""
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    emulator = processes.Process("services.emulator", logs, None, DOGOPS_EMULATOR_STATE_DIR=state)
    gateway = processes.gateway(logs, emulator.url)
    try:
        processes.deploy_function(emulator.url, "echo", "def handler(event, context):\n    return event\n")
        lam = processes.client("lambda", gateway.url, retries={"max_attempts": 0}, read_timeout=10)
        assert json.loads(lam.invoke(FunctionName="echo", Payload=b'{"n": 1}')["Payload"].read()) == {"n": 1}
        emulator.proc.send_signal(signal.SIGKILL)
        emulator.proc.wait()
        time.sleep(lambda_runtime.CONFIG_SECONDS + 0.5)  # the gateway may reuse the configuration it read for 1 s
        for call in (lambda: lam.invoke(FunctionName="echo", Payload=b"{}"),
                     lambda: lam.get_function(FunctionName="echo")):
            started = time.monotonic()
            with pytest.raises(ClientError) as failure:
                call()
            assert failure.value.response["Error"]["Code"] in ("ServiceUnavailable", "ServiceUnavailableException")
            assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert time.monotonic() - started < 5
        emulator = processes.Process("services.emulator", logs, emulator.port, DOGOPS_EMULATOR_STATE_DIR=state)
        assert json.loads(lam.invoke(FunctionName="echo", Payload=b'{"n": 2}')["Payload"].read()) == {"n": 2}
    finally:
        gateway.stop()
        emulator.stop()


def test_log_batches_are_merged_by_compaction_and_every_event_stays(tmp_path):
    """A log writer's many small PutLogEvents become one request per stream in the journal; every event, in
    order, is there after two restarts (the second replays the merged journal)."""
    state, logs = tmp_path / "state", tmp_path / "logs"
    logs.mkdir()
    emulator = processes.Process("services.emulator", logs, None, DOGOPS_EMULATOR_STATE_DIR=state)
    try:
        cloudwatch = processes.client("logs", emulator.url)
        cloudwatch.create_log_group(logGroupName="/aws/lambda/persisted")
        for stream in ("a", "b"):
            cloudwatch.create_log_stream(logGroupName="/aws/lambda/persisted", logStreamName=stream)
        now = int(time.time() * 1000)
        for batch in range(30):
            for stream in ("a", "b"):
                cloudwatch.put_log_events(logGroupName="/aws/lambda/persisted", logStreamName=stream, logEvents=[
                    {"timestamp": now + batch * 10 + i, "message": f"{stream} {batch} {i}"} for i in range(3)])

        def events(stream):
            return [e["message"] for e in processes.client("logs", emulator.url).get_log_events(
                logGroupName="/aws/lambda/persisted", logStreamName=stream, startFromHead=True)["events"]]

        before = {stream: events(stream) for stream in ("a", "b")}
        assert len(before["a"]) == 90 and before["a"][:2] == ["a 0 0", "a 0 1"]
        for _ in range(2):
            emulator = _restart(emulator, logs, state)
            assert {stream: events(stream) for stream in ("a", "b")} == before
        assert len(Journal(state).records()) == 1 + 2 + 2  # the group, two streams, one batch each
    finally:
        emulator.stop()
