"""Asynchronous invocation (``InvocationType=Event``) through real boto3 clients against a real gateway and
emulator (issue 16, point 5): retries, destinations, the dead-letter queue, throttling, a full queue and a gateway
killed with SIGKILL. Retry delays are shortened with ``DOGOPS_LAMBDA_RETRY_DELAY``."""

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dogops.lambda_package import build_zip

from . import processes

APP = b'''
import json, os, time

def handler(event, context):
    directory = event.get("dir") or os.environ.get("RECORD_DIR")  # RECORD_DIR: a destination keeps its events
    if directory:
        name = f"{context.aws_request_id}.{time.time():.3f}"
        with open(os.path.join(directory, name), "w") as f:
            json.dump(event, f)
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise RuntimeError("failed on purpose")
    return {"ok": event.get("n")}
'''
RETRY_DELAY = 0.5  # s: the first retry after this, the second after twice this
QUEUE_LIMIT = 40
ACCOUNT_ARN = "arn:aws:{}:us-east-1:123456789012:{}"


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def emulator(logs):
    proc = processes.emulator(logs)
    yield proc
    proc.stop()


def start_gateway(logs, emulator, state: Path, port: int | None = None):
    return processes.gateway(logs, emulator.url, port, DOGOPS_LOG_DIR=logs, DOGOPS_STATE_DIR=state,
                             DOGOPS_LAMBDA_RETRY_DELAY=RETRY_DELAY, DOGOPS_LAMBDA_EVENT_QUEUE=QUEUE_LIMIT,
                             DOGOPS_LAMBDA_EVENT_THREADS=4)


@pytest.fixture(scope="module")
def gateway(logs, emulator, tmp_path_factory):
    proc = start_gateway(logs, emulator, tmp_path_factory.mktemp("state"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def aws(emulator):
    """Clients on the emulator, and a role the functions run as that may send to every destination."""
    iam = processes.client("iam", emulator.url)
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="async", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="async", PolicyName="destinations", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "sqs:SendMessage", "sns:Publish", "events:PutEvents", "lambda:InvokeFunction"]}]}))
    return {service: processes.client(service, emulator.url) for service in ("lambda", "sqs", "sns", "events", "cloudwatch")} | {
        "role": role}


@pytest.fixture(scope="module")
def client(gateway):
    return processes.client("lambda", gateway.url, retries={"max_attempts": 0}, read_timeout=30)


def deploy(aws, name: str, concurrency: int | None = None, **args) -> str:
    aws["lambda"].create_function(FunctionName=name, Runtime="python3.12", Role=aws["role"], Handler="app.handler",
                                  Code={"ZipFile": build_zip({"app.py": APP})}, **{"Timeout": 10, **args})
    if concurrency is not None:
        aws["lambda"].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)
    return name


def queue(aws, name: str) -> tuple[str, str]:
    url = aws["sqs"].create_queue(QueueName=name)["QueueUrl"]
    return url, ACCOUNT_ARN.format("sqs", name)


def receive(aws, url: str, count: int = 1, seconds: float = 30) -> list[dict]:
    """``count`` messages from the queue, waiting at most ``seconds``."""
    found, deadline = [], time.monotonic() + seconds
    while len(found) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} messages arrived"
        found += aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                            MessageAttributeNames=["All"]).get("Messages", [])
    return found


def send(client, name: str, event: dict) -> str:
    out = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event))
    assert out["StatusCode"] == 202
    return out["ResponseMetadata"]["RequestId"]


def runs(directory: Path, request_id: str | None = None) -> list[float]:
    """When the function ran (for one request id, or any)."""
    return sorted(float(p.name.split(".", 1)[1]) for p in directory.iterdir()
                  if request_id is None or p.name.startswith(request_id + "."))


def metric(aws, function: str, name: str) -> dict:
    """The function's ``AWS/Lambda`` metric in the emulator's CloudWatch now: its sample count and sum (the gateway
    sends what it recorded every second)."""
    now = datetime.now(timezone.utc)
    points = aws["cloudwatch"].get_metric_statistics(
        Namespace="AWS/Lambda", MetricName=name, Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=["SampleCount", "Sum"])["Datapoints"]
    return {k: sum(p[k] for p in points) for k in ("SampleCount", "Sum")}


def wait_for(check, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def test_a_failing_event_is_retried_twice_then_recorded_on_failure_and_in_the_dead_letter_queue(aws, client,
                                                                                               tmp_path):
    failures, failures_arn = queue(aws, "failures")
    dlq, dlq_arn = queue(aws, "dead-letters")
    name = deploy(aws, "failing", DeadLetterConfig={"TargetArn": dlq_arn})
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, DestinationConfig={
        "OnFailure": {"Destination": failures_arn}})
    event = {"dir": str(tmp_path), "fail": True}
    rid = send(client, name, event)
    (message,) = receive(aws, failures)
    record = json.loads(message["Body"])
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": rid, "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:failing:$LATEST",
        "condition": "RetriesExhausted", "approximateInvokeCount": 3}
    assert record["requestPayload"] == event
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert record["responsePayload"]["errorMessage"] == "failed on purpose"
    attempts = runs(tmp_path, rid)
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= RETRY_DELAY * 0.9 and attempts[2] - attempts[1] >= 2 * RETRY_DELAY * 0.9
    (dead,) = receive(aws, dlq)
    assert json.loads(dead["Body"]) == event
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes == {"RequestID": rid, "ErrorCode": "200", "ErrorMessage": "failed on purpose"}
    assert dead["MessageAttributes"]["ErrorCode"]["DataType"] == "Number"
    wait_for(lambda: metric(aws, name, "AsyncEventAge")["SampleCount"] == 3, 10)  # one per attempt
    for counted in ("AsyncEventsReceived", "AsyncEventsDropped"):  # sent within a second of being counted
        wait_for(lambda counted=counted: metric(aws, name, counted) == {"SampleCount": 1, "Sum": 1}, 10)


def test_maximum_retry_attempts_and_success_destinations(aws, client, tmp_path):
    successes, successes_arn = queue(aws, "successes")
    topic = aws["sns"].create_topic(Name="successes")["TopicArn"]
    aws["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=successes_arn)
    dead_letters, dead_letters_arn = queue(aws, "dead-topic-letters")
    dead_topic = aws["sns"].create_topic(Name="dead-letters")["TopicArn"]
    aws["sns"].subscribe(TopicArn=dead_topic, Protocol="sqs", Endpoint=dead_letters_arn)
    name = deploy(aws, "once", DeadLetterConfig={"TargetArn": dead_topic})
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={
        "OnSuccess": {"Destination": topic}, "OnFailure": {"Destination": ACCOUNT_ARN.format(
            "lambda", "function:recorder")}})
    recorder = tmp_path / "recorder"
    recorder.mkdir()
    deploy(aws, "recorder", Environment={"Variables": {"RECORD_DIR": str(recorder)}})
    ok = send(client, name, {"n": 7})
    (message,) = receive(aws, successes)
    record = json.loads(json.loads(message["Body"])["Message"])  # SNS's envelope
    assert record["requestContext"]["requestId"] == ok and record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"ok": 7}
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    failed = send(client, name, {"fail": True, "dir": str(attempts)})
    wait_for(lambda: any(recorder.iterdir()))  # the recorder ran with the failure record as its event
    (path,) = recorder.iterdir()
    record = json.loads(path.read_text())
    assert record["requestContext"]["requestId"] == failed
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1  # MaximumRetryAttempts 0: no retry
    assert len(runs(attempts, failed)) == 1
    (dead,) = receive(aws, dead_letters)
    envelope = json.loads(dead["Body"])  # SNS's: the event as sent, Lambda's attributes
    assert json.loads(envelope["Message"]) == {"fail": True, "dir": str(attempts)}
    assert envelope["MessageAttributes"]["RequestID"] == {"Type": "String", "Value": failed}
    assert envelope["MessageAttributes"]["ErrorCode"] == {"Type": "Number", "Value": "200"}


def test_eventbridge_destination_and_reserved_concurrency_zero(aws, client):
    """A function with reserved concurrency 0 sends its events to failure without running them (AWS documents it);
    the record reaches an EventBridge bus as its detail, source lambda."""
    records, records_arn = queue(aws, "bus-records")
    bus = aws["events"].create_event_bus(Name="results")["EventBusArn"]
    aws["events"].put_rule(Name="lambda-results", EventBusName="results", EventPattern=json.dumps(
        {"source": ["lambda"]}))
    aws["events"].put_targets(Rule="lambda-results", EventBusName="results", Targets=[
        {"Id": "records", "Arn": records_arn}])
    name = deploy(aws, "stopped", concurrency=0)
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, DestinationConfig={
        "OnFailure": {"Destination": bus}})
    rid = send(client, name, {"n": 3})
    (message,) = receive(aws, records)
    envelope = json.loads(message["Body"])
    assert envelope["source"] == "lambda"
    assert envelope["detail-type"] == "Lambda Function Invocation Result - Failure"
    record = envelope["detail"]
    assert record["requestContext"]["requestId"] == rid and record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"n": 3} and "responseContext" not in record


@pytest.mark.slow
def test_an_event_older_than_its_maximum_age_is_discarded_to_failure(aws, client, tmp_path):
    """An event throttled past MaximumEventAgeInSeconds (60 s, AWS's least) goes to failure as EventAgeExceeded:
    the function's one slot is held by a synchronous invocation meanwhile."""
    failures, failures_arn = queue(aws, "aged")
    name = deploy(aws, "busy", concurrency=1, Timeout=90)
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60, DestinationConfig={
        "OnFailure": {"Destination": failures_arn}})
    slow = processes.client("lambda", client.meta.endpoint_url, retries={"max_attempts": 0}, read_timeout=120)
    holder = threading.Thread(target=slow.invoke, kwargs={"FunctionName": name, "Payload": b'{"sleep": 75}'})
    holder.start()
    time.sleep(1)
    rid = send(client, name, {"dir": str(tmp_path)})
    (message,) = receive(aws, failures, seconds=90)
    record = json.loads(message["Body"])
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert not list(tmp_path.iterdir())  # it never ran
    holder.join(90)


def test_records_are_sent_with_the_functions_role(aws, client, emulator, tmp_path):
    """A role that may not send to the destination gets no record there (AWS drops it, as here)."""
    records, records_arn = queue(aws, "unreachable")
    iam = processes.client("iam", emulator.url)
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    bare = iam.create_role(RoleName="bare", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    aws["lambda"].create_function(FunctionName="unpermitted", Runtime="python3.12", Role=bare, Handler="app.handler",
                                  Code={"ZipFile": build_zip({"app.py": APP})})
    name = "unpermitted"
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={
        "OnFailure": {"Destination": records_arn}})
    rid = send(client, name, {"fail": True, "dir": str(tmp_path)})
    wait_for(lambda: len(runs(tmp_path, rid)) == 1)
    time.sleep(2)
    assert "Messages" not in aws["sqs"].receive_message(QueueUrl=records, WaitTimeSeconds=1)
    wait_for(lambda: metric(aws, name, "DestinationDeliveryFailures") == {"SampleCount": 1, "Sum": 1}, 10)


def test_an_alias_has_its_own_config_and_runs_its_version(aws, client):
    records, records_arn = queue(aws, "alias-records")
    name = deploy(aws, "versioned")
    aws["lambda"].publish_version(FunctionName=name)
    aws["lambda"].create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    aws["lambda"].put_function_event_invoke_config(FunctionName=name, Qualifier="live", DestinationConfig={
        "OnSuccess": {"Destination": records_arn}})
    unqualified = send(client, name, {"n": 0})  # $LATEST has no config: no record
    out = client.invoke(FunctionName=name, Qualifier="live", InvocationType="Event", Payload=b'{"n": 1}')
    (message,) = receive(aws, records)
    record = json.loads(message["Body"])
    assert record["requestContext"]["requestId"] == out["ResponseMetadata"]["RequestId"] != unqualified
    assert record["requestContext"]["functionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:versioned:live"
    assert record["responseContext"]["executedVersion"] == "1" and record["responsePayload"] == {"ok": 1}


def test_event_invoke_config_api(aws):
    lam = aws["lambda"]
    name = deploy(aws, "configured")
    lam.publish_version(FunctionName=name)
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1,
                                               MaximumEventAgeInSeconds=120)
    assert put["FunctionArn"].endswith(":configured:$LATEST")
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 120)
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    updated = lam.update_function_event_invoke_config(FunctionName=name, DestinationConfig={
        "OnFailure": {"Destination": ACCOUNT_ARN.format("sqs", "somewhere")}})
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (1, 120)  # kept
    replaced = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
    assert "MaximumEventAgeInSeconds" not in replaced and replaced["DestinationConfig"]["OnFailure"] == {}
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier="1")  # per qualifier
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=0)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"].rsplit(":", 1)[1] for c in listed) == ["$LATEST", "1"]
    with pytest.raises(lam.exceptions.ClientError) as caught:
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=3)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName=name, Qualifier="9", MaximumRetryAttempts=0)
    s3 = "arn:aws:s3:::a-bucket"  # not a destination here (AWS now takes an S3 bucket on failure)
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": s3}})
    assert caught.value.response["Error"]["Message"] == f"The destination ARN {s3} is invalid."
    lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="1")


def test_a_burst_beyond_concurrency_loses_no_event(aws, client, tmp_path):
    name = deploy(aws, "narrow", concurrency=2)
    sent = {send(client, name, {"dir": str(tmp_path), "sleep": 0.2}) for _ in range(24)}
    wait_for(lambda: {p.name.split(".", 1)[0] for p in tmp_path.iterdir()} >= sent, 90)


def test_a_full_queue_answers_throttling(aws, client):
    name = deploy(aws, "clogged", concurrency=1)
    outcomes = []
    for _ in range(QUEUE_LIMIT + 5):
        try:
            send(client, name, {"sleep": 5})  # none ends while the queue fills
            outcomes.append(202)
        except client.exceptions.TooManyRequestsException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            outcomes.append(429)
    assert outcomes.count(429) >= 4 and outcomes[:QUEUE_LIMIT - 2] == [202] * (QUEUE_LIMIT - 2)
    aws["lambda"].delete_function(FunctionName=name)  # its queued events are dropped, as the function is gone


def test_a_gateway_killed_with_sigkill_loses_no_accepted_event(logs, emulator, aws, tmp_path_factory):
    state, seen = tmp_path_factory.mktemp("killed-state"), tmp_path_factory.mktemp("seen")
    name = deploy(aws, "survivor", concurrency=1)
    first = start_gateway(logs, emulator, state)
    client = processes.client("lambda", first.url, retries={"max_attempts": 0})
    sent = {send(client, name, {"dir": str(seen), "sleep": 0.3}) for _ in range(8)}
    first.proc.kill()
    first.proc.wait()
    delivered_before = {p.name.split(".", 1)[0] for p in seen.iterdir()}
    assert len(delivered_before) < len(sent)  # the kill came while events were still queued
    second = start_gateway(logs, emulator, state, first.port)
    try:
        wait_for(lambda: {p.name.split(".", 1)[0] for p in seen.iterdir()} >= sent, 60)
    finally:
        second.stop()
