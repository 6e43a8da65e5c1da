"""Every error path of the stack, as boto3 parses it against AWS."""

import io
import json
import time
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from .conftest import client

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

FUNCTIONS = '''
import json, os, time
import boto3

def fail(event, context):
    raise ValueError("bad " + event["why"])

def slow(event, context):
    time.sleep(event["seconds"])
    return {"slept": event["seconds"]}

def record(event, context):
    boto3.client("s3").put_object(Bucket=os.environ["BUCKET"], Key=event["key"], Body=context.aws_request_id)
    return None
'''


@pytest.fixture(scope="module")
def deploy(session, stack_env, lambda_):
    """Deploy a handler of ``FUNCTIONS`` as a new function through the stack's Lambda control plane."""
    iam = client(session, stack_env, "iam")
    role = iam.create_role(RoleName=f"dogops-it-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName=role["Role"]["RoleName"], PolicyName="record", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject",
                                                 "Resource": f"arn:aws:s3:::{stack_env['DOGOPS_BUCKET']}/it/*"}]}))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("functions.py", FUNCTIONS)
    created = []

    def _deploy(handler: str, timeout: int = 3) -> str:
        name = f"it-{handler}-{uuid.uuid4().hex[:8]}"
        lambda_.create_function(FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"],
                                Handler=f"functions.{handler}", Code={"ZipFile": archive.getvalue()},
                                Timeout=timeout, Environment={"Variables": {"BUCKET": stack_env["DOGOPS_BUCKET"]}})
        created.append(name)
        return name

    yield _deploy
    for name in created:
        lambda_.delete_function(FunctionName=name)


def _error(call) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


# --- SageMaker Runtime -------------------------------------------------------------------------------------------

def test_container_rejection_is_a_model_error_with_the_original_status(runtime, stack_env):
    error = _error(lambda: runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"],
                                                   Body=b"not an image", ContentType="image/jpeg"))
    assert isinstance(error, runtime.exceptions.ModelError)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error.response["OriginalStatusCode"] == 400
    assert "/aws/sagemaker/Endpoints/" + stack_env["DOGOPS_ENDPOINT_NAME"] in error.response["LogStreamArn"]
    assert error.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_unsupported_accept_is_a_model_error_406(runtime, stack_env, sample_jpeg):
    error = _error(lambda: runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"], Body=sample_jpeg,
                                                   ContentType="image/jpeg", Accept="text/csv"))
    assert isinstance(error, runtime.exceptions.ModelError) and error.response["OriginalStatusCode"] == 406


def test_unknown_endpoint_is_a_validation_error(runtime):
    error = _error(lambda: runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}",
                                                   ContentType="application/json"))
    assert isinstance(error, runtime.exceptions.ValidationError)
    assert "no-such-endpoint" in error.response["Error"]["Message"]


def test_body_over_6_mib_is_refused_before_the_container(runtime, stack_env):
    error = _error(lambda: runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"],
                                                   Body=b"x" * (6 * 1024 * 1024 + 1), ContentType="image/jpeg"))
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 413)


# --- Lambda Invoke -----------------------------------------------------------------------------------------------

def test_unknown_function_is_resource_not_found(lambda_):
    error = _error(lambda: lambda_.invoke(FunctionName="no-such-function", Payload=b"{}"))
    assert isinstance(error, lambda_.exceptions.ResourceNotFoundException)


def test_payload_that_is_not_json_is_invalid_request_content(lambda_, stack_env):
    error = _error(lambda: lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=b"{not json"))
    assert isinstance(error, lambda_.exceptions.InvalidRequestContentException)


def test_payload_over_6_mb_is_request_too_large(lambda_, stack_env):
    payload = json.dumps({"image": "A" * (6 * 1024 * 1024)})
    error = _error(lambda: lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=payload))
    assert isinstance(error, lambda_.exceptions.RequestTooLargeException)


@pytest.mark.parametrize("event", [{}, {"url": "ftp://example.com/dog.jpg"}, {"url": "not a url"},
                                   {"image": "%%% not base64"}, {"url": 7}])
def test_the_function_answers_bad_input_with_400(lambda_, stack_env, event):
    response = lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=json.dumps(event))
    answer = json.loads(response["Payload"].read())
    assert "FunctionError" not in response and answer["statusCode"] == 400
    assert json.loads(answer["body"])["message"]


def test_metadata_address_is_refused_by_the_endpoint_and_reported_as_bad_input(lambda_, stack_env):
    event = {"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}
    answer = json.loads(lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"],
                                       Payload=json.dumps(event))["Payload"].read())
    assert answer["statusCode"] == 400
    assert "169.254.169.254" in json.loads(answer["body"])["message"]


def test_unhandled_exception_is_a_function_error(lambda_, deploy):
    response = lambda_.invoke(FunctionName=deploy("fail"), Payload=json.dumps({"why": "input"}))
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad input" and error["stackTrace"]


def test_timeout_is_a_function_error_with_lambdas_payload(lambda_, deploy):
    started = time.monotonic()
    response = lambda_.invoke(FunctionName=deploy("slow", timeout=1), Payload=json.dumps({"seconds": 10}))
    assert time.monotonic() - started < 8
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in json.loads(response["Payload"].read())["errorMessage"]


def test_event_invocation_runs_later_with_the_functions_role(lambda_, deploy, s3, stack_env):
    key = f"it/{uuid.uuid4().hex}"
    response = lambda_.invoke(FunctionName=deploy("record"), InvocationType="Event", Payload=json.dumps({"key": key}))
    assert response["StatusCode"] == 202
    for _ in range(60):
        try:
            s3.head_object(Bucket=stack_env["DOGOPS_BUCKET"], Key=key)
            return
        except ClientError:
            time.sleep(0.5)
    pytest.fail("the Event invocation never ran")


def test_dry_run_checks_without_running(lambda_, stack_env):
    response = lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], InvocationType="DryRun")
    assert response["StatusCode"] == 204
