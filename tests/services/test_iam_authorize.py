"""The local stack authorizes ``InvokeEndpoint`` as AWS does (issue 7, least privilege): real emulator and gateway
processes, a role shaped like ``dogops.lambda_deploy``'s (InvokeEndpoint on one endpoint, its logs), its
temporary credentials from ``AssumeRole`` on the emulator, and a Lambda function running as that role."""

import json
from contextlib import contextmanager

import boto3
import pytest
import requests

from dogops.lambda_deploy import TRUST_POLICY, role_policy
from dogops.lambda_package import build_zip
from services.security.sigv4 import RootAuth

from . import processes
from .test_sagemaker_runtime import Backend, create_endpoint

ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint"
CALLER = b'''
import boto3

def handler(event, context):
    runtime = boto3.client("sagemaker-runtime")
    try:
        return {"body": runtime.invoke_endpoint(EndpointName=event["endpoint"], Body=b"{}")["Body"].read().decode()}
    except runtime.exceptions.ClientError as e:
        return {"code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"],
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
'''


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    proc = processes.emulator(tmp_path_factory.mktemp("logs"))
    for name in ("ep-a", "ep-b"):
        create_endpoint(proc.url, name)
    yield proc
    proc.stop()


@contextmanager
def serving_gateway(emulator, endpoints=("ep-a", "ep-b"), **env):
    """A gateway on ``emulator`` whose ``endpoints`` all answer with the request's body (``env``: its settings)."""
    backend = Backend()
    for name in endpoints:
        processes.route(emulator.url, name, backend.url)
    proc = processes.gateway(emulator.log.parent, emulator.url, DOGOPS_LOG_DIR=emulator.log.parent, **env)
    try:
        yield proc
    finally:
        proc.stop()
        backend.shutdown()


@pytest.fixture(scope="module")
def gateway(emulator):
    with serving_gateway(emulator) as proc:
        yield proc


def make_role(emulator, name: str, extra: list[dict] = ()) -> str:
    """A role with ``lambda_deploy``'s policy for ``ep-a`` (plus ``extra`` statements in a managed policy)."""
    iam = processes.client("iam", emulator.url)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))["Role"]["Arn"]
    endpoint = processes.client("sagemaker", emulator.url).describe_endpoint(EndpointName="ep-a")["EndpointArn"]
    assert endpoint == f"{ACCOUNT_ARN}/ep-a"  # the ARN the gateway authorizes against
    policy = role_policy(endpoint, f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{name}")
    iam.put_role_policy(RoleName=name, PolicyName="invoke", PolicyDocument=json.dumps(policy))
    if extra:
        managed = iam.create_policy(PolicyName=f"{name}-extra", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": list(extra)}))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    return arn


def runtime_as(emulator, gateway, role: str):
    """A ``sagemaker-runtime`` client at the gateway with the role's temporary credentials."""
    credentials = processes.client("sts", emulator.url).assume_role(RoleArn=role, RoleSessionName="tests")["Credentials"]
    return boto3.client("sagemaker-runtime", endpoint_url=gateway.url, region_name="us-east-1",
                        aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])


def denied(runtime, endpoint: str) -> dict:
    with pytest.raises(runtime.exceptions.ClientError) as caught:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    return caught.value.response


def test_role_may_invoke_only_its_endpoint(emulator, gateway):
    runtime = runtime_as(emulator, gateway, make_role(emulator, "only-a"))
    assert runtime.invoke_endpoint(EndpointName="ep-a", Body=b'{"x": 1}')["Body"].read() == b'{"x": 1}'
    response = denied(runtime, "ep-b")
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Message"] == (
        "User: arn:aws:sts::123456789012:assumed-role/only-a/tests is not authorized to perform: "
        f"sagemaker:InvokeEndpoint on resource: {ACCOUNT_ARN}/ep-b because no identity-based policy allows the "
        "sagemaker:InvokeEndpoint action")


def test_explicit_deny_wins(emulator, gateway):
    role = make_role(emulator, "denied-a", [
        {"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "sagemaker:InvokeEndpoint", "Resource": f"{ACCOUNT_ARN}/ep-a"}])
    runtime = runtime_as(emulator, gateway, role)
    response = denied(runtime, "ep-a")
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"].endswith("with an explicit deny in an identity-based policy")
    assert runtime.invoke_endpoint(EndpointName="ep-b", Body=b"{}")["Body"].read() == b"{}"


def test_root_credentials_still_work_and_unknown_keys_do_not(emulator, gateway):
    root = processes.client("sagemaker-runtime", gateway.url)
    assert root.invoke_endpoint(EndpointName="ep-b", Body=b"{}")["Body"].read() == b"{}"
    stranger = boto3.client("sagemaker-runtime", endpoint_url=gateway.url, region_name="us-east-1",
                            aws_access_key_id="AKIAUNKNOWN0000000000", aws_secret_access_key="x")
    assert denied(stranger, "ep-a")["Error"]["Code"] == "UnrecognizedClientException"
    unsigned = requests.post(f"{gateway.url}/endpoints/ep-a/invocations", data=b"{}", timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_the_authorize_route(emulator):
    def ask(**query):
        return requests.post(f"{emulator.url}/_dogops/iam/authorize", json=query, timeout=10, auth=RootAuth())

    iam = processes.client("iam", emulator.url)
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]["AccessKeyId"]
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]}))
    assert ask(access_key_id=key, action="s3:GetObject", resource="arn:aws:s3:::data/x").json() == {
        "allowed": True, "decision": "allowed", "principal": "arn:aws:iam::123456789012:user/reader"}
    assert ask(access_key_id=key, action="s3:PutObject", resource="arn:aws:s3:::data/x").json() == {
        "allowed": False, "decision": "no-allow", "principal": "arn:aws:iam::123456789012:user/reader",
        "message": "User: arn:aws:iam::123456789012:user/reader is not authorized to perform: s3:PutObject on "
                   "resource: arn:aws:s3:::data/x because no identity-based policy allows the s3:PutObject action"}
    assert ask(access_key_id="testing", action="iam:PassRole", resource="*").json()["allowed"] is True
    assert ask(access_key_id="ASIANOSUCHKEY", session_token="t", action="s3:GetObject",
               resource="*").json()["decision"] == "unknown-key"
    assert ask(access_key_id=key).status_code == 400


def test_function_role_is_enforced_inside_lambda(emulator, gateway):
    role = make_role(emulator, "caller-role")
    lam = processes.client("lambda", emulator.url)
    lam.create_function(FunctionName="caller", Runtime="python3.12", Role=role, Handler="app.handler",
                        Code={"ZipFile": build_zip({"app.py": CALLER})}, Timeout=30)
    client = processes.client("lambda", gateway.url, retries={"max_attempts": 0}, read_timeout=60)

    def call(endpoint: str) -> dict:
        return json.loads(client.invoke(FunctionName="caller", Payload=json.dumps({"endpoint": endpoint}))[
            "Payload"].read())

    assert call("ep-a") == {"body": "{}"}
    other = call("ep-b")
    assert other["code"] == "AccessDeniedException", other
    assert other["message"].startswith("User: arn:aws:sts::123456789012:assumed-role/caller-role/")
    assert f"on resource: {ACCOUNT_ARN}/ep-b because" in other["message"]


def test_enforcement_can_be_switched_off_but_not_authentication(emulator):
    iam = processes.client("iam", emulator.url)
    iam.create_user(UserName="no-policies")
    key = iam.create_access_key(UserName="no-policies")["AccessKey"]
    with serving_gateway(emulator, DOGOPS_IAM_ENFORCE=0) as proc:
        user = boto3.client("sagemaker-runtime", endpoint_url=proc.url, region_name="us-east-1",
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        assert user.invoke_endpoint(EndpointName="ep-a", Body=b"{}")["Body"].read() == b"{}"
        stranger = boto3.client("sagemaker-runtime", endpoint_url=proc.url, region_name="us-east-1",
                                aws_access_key_id="AKIAUNKNOWN0000000000", aws_secret_access_key="x")
        with pytest.raises(stranger.exceptions.ClientError) as refused:
            stranger.invoke_endpoint(EndpointName="ep-a", Body=b"{}")
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
