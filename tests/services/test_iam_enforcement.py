"""Least privilege, proven (issue 7): the promoted function's role may predict and nothing else, on the real
emulator and gateway processes with real boto3 clients and the role's temporary credentials from ``AssumeRole``.

Its prediction succeeds; invoking another endpoint, reading the data bucket, ``DeleteEndpoint``, passing a role and
invoking another function are each refused with AWS's error. The stack's own key (the account root) still does
everything, and ``DOGOPS_IAM_ENFORCE=0`` turns enforcement off.
"""

import json

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from dogops.lambda_package import build_zip

from . import processes
from .test_iam_authorize import make_role, serving_gateway
from .test_sagemaker_runtime import create_endpoint

ACCOUNT = "123456789012"
ENDPOINTS = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint"
FUNCTIONS = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function"
ECHO = "def handler(event, context):\n    return event\n"
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
# The function, running as its role, tries what it must not do; each answer is the error's code and status.
PROBE = b'''
import boto3

def handler(event, context):
    def attempt(call):
        try:
            call()
            return "allowed"
        except boto3.client("sts").exceptions.ClientError as e:
            return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]

    sagemaker = boto3.client("sagemaker")
    return {
        "predict": boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="ep-a", Body=b"{}")["Body"].read().decode(),
        "other-endpoint": attempt(lambda: boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="ep-b", Body=b"{}")),
        "data-bucket": attempt(lambda: boto3.client("s3").get_object(Bucket="data", Key="train.csv")),
        "delete-endpoint": attempt(lambda: sagemaker.delete_endpoint(EndpointName="ep-a")),
        "pass-role": attempt(lambda: sagemaker.create_model(ModelName="m", ExecutionRoleArn=event["role"],
                                                             PrimaryContainer={"Image": "x"})),
        "other-function": attempt(lambda: boto3.client("lambda").invoke(FunctionName="other")),
    }
'''


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    proc = processes.emulator(tmp_path_factory.mktemp("logs"))
    for name in ("ep-a", "ep-b"):
        create_endpoint(proc.url, name)
    s3 = processes.client("s3", proc.url)
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="train.csv", Body=b"x,y\n")
    processes.deploy_function(proc.url, "other", ECHO)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(emulator):
    with serving_gateway(emulator) as proc:
        yield proc


def as_role(emulator, role: str):
    """A maker of boto3 clients (``make(service, url)``) with the role's temporary credentials."""
    credentials = processes.client("sts", emulator.url).assume_role(RoleArn=role, RoleSessionName="predict")["Credentials"]

    def make(service: str, url: str):
        return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])
    return make


def user(emulator, name: str, *statements: dict):
    """A maker of boto3 clients for a new IAM user with these policy statements (none: no permissions)."""
    iam = processes.client("iam", emulator.url)
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": list(statements)}))
    key = iam.create_access_key(UserName=name)["AccessKey"]

    def make(service: str, url: str):
        return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=key["SecretAccessKey"])
    return make


def refused(call) -> dict:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response


def assert_denied(response: dict, code: str, status: int, message: str | None = None) -> None:
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    if code.endswith("Exception"):  # JSON protocols name the error in a header too
        assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == code
    if message is not None:
        assert response["Error"]["Message"] == message


def no_allow(principal: str, action: str, resource: str) -> str:
    return (f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action")


def test_the_function_role_may_predict_and_nothing_else(emulator, gateway):
    role = make_role(emulator, "predictor")
    make = as_role(emulator, role)
    me = "arn:aws:sts::123456789012:assumed-role/predictor/predict"
    assert make("sagemaker-runtime", gateway.url).invoke_endpoint(EndpointName="ep-a", Body=b"{}")["Body"].read() == b"{}"

    runtime = make("sagemaker-runtime", gateway.url)
    assert_denied(refused(lambda: runtime.invoke_endpoint(EndpointName="ep-b", Body=b"{}")), "AccessDeniedException",
                  400, no_allow(me, "sagemaker:InvokeEndpoint", f"{ENDPOINTS}/ep-b"))
    s3 = make("s3", emulator.url)
    assert_denied(refused(lambda: s3.get_object(Bucket="data", Key="train.csv")), "AccessDenied", 403, "Access Denied")
    sagemaker = make("sagemaker", emulator.url)
    for endpoint in ("ep-b", "ep-a"):  # another endpoint, and its own
        assert_denied(refused(lambda e=endpoint: sagemaker.delete_endpoint(EndpointName=e)), "AccessDeniedException", 400,
                      no_allow(me, "sagemaker:DeleteEndpoint", f"{ENDPOINTS}/{endpoint}"))
    assert_denied(refused(lambda: sagemaker.create_model(ModelName="m", ExecutionRoleArn=role,
                                                          PrimaryContainer={"Image": "x"})),
                  "AccessDeniedException", 400, no_allow(me, "sagemaker:CreateModel", "arn:aws:sagemaker:us-east-1:"
                                                         f"{ACCOUNT}:model/m"))
    lam = make("lambda", gateway.url)
    assert_denied(refused(lambda: lam.invoke(FunctionName="other")), "AccessDeniedException", 403,
                  no_allow(me, "lambda:InvokeFunction", f"{FUNCTIONS}:other"))
    root = processes.client("sagemaker", emulator.url)
    assert {e["EndpointName"] for e in root.list_endpoints()["Endpoints"]} == {"ep-a", "ep-b"}  # nothing was deleted


def test_inside_the_function_its_role_is_enforced_everywhere(emulator, gateway):
    role = make_role(emulator, "probe-role")
    processes.client("lambda", emulator.url).create_function(
        FunctionName="probe", Runtime="python3.12", Role=role, Handler="app.handler",
        Code={"ZipFile": build_zip({"app.py": PROBE})}, Timeout=60)
    client = processes.client("lambda", gateway.url, retries={"max_attempts": 0}, read_timeout=90)
    answer = json.loads(client.invoke(FunctionName="probe", Payload=json.dumps({"role": role}))["Payload"].read())
    assert answer == {"predict": "{}", "other-endpoint": ["AccessDeniedException", 400],
                      "data-bucket": ["AccessDenied", 403], "delete-endpoint": ["AccessDeniedException", 400],
                      "pass-role": ["AccessDeniedException", 400], "other-function": ["AccessDeniedException", 403]}


def test_passing_a_role_needs_iam_pass_role(emulator):
    iam = processes.client("iam", emulator.url)
    role = iam.create_role(RoleName="sm-exec", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    make = user(emulator, "deployer", {"Effect": "Allow", "Action": ["sagemaker:CreateModel", "lambda:CreateFunction",
                                                                     "lambda:UpdateFunctionConfiguration"],
                                       "Resource": "*"})
    me = "arn:aws:iam::123456789012:user/deployer"
    sagemaker, lam = make("sagemaker", emulator.url), make("lambda", emulator.url)
    create_model = lambda: sagemaker.create_model(ModelName="passed", ExecutionRoleArn=role,  # noqa: E731
                                                  PrimaryContainer={"Image": "x"})
    assert_denied(refused(create_model), "AccessDeniedException", 400, no_allow(me, "iam:PassRole", role))
    create_function = lambda: lam.create_function(  # noqa: E731
        FunctionName="passed", Runtime="python3.12", Role=role, Handler="app.handler",
        Code={"ZipFile": build_zip({"app.py": ECHO.encode()})})
    assert_denied(refused(create_function), "AccessDeniedException", 403, no_allow(me, "iam:PassRole", role))

    iam.put_user_policy(UserName="deployer", PolicyName="pass", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": role}]}))
    assert create_model()["ModelArn"].endswith(":model/passed")
    create_function()
    other = iam.create_role(RoleName="not-passable", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    assert_denied(refused(lambda: lam.update_function_configuration(FunctionName="passed", Role=other)),
                  "AccessDeniedException", 403, no_allow(me, "iam:PassRole", other))


def test_resource_level_policies_are_evaluated_on_the_resource_arn(emulator, gateway):
    create_endpoint(emulator.url, "ep-mine")
    create_endpoint(emulator.url, "ep-theirs")
    root = processes.client("lambda", emulator.url)
    processes.deploy_function(emulator.url, "versioned", ECHO)
    version = root.publish_version(FunctionName="versioned")["Version"]
    make = user(emulator, "owner",
                {"Effect": "Allow", "Action": ["sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint"],
                 "Resource": f"{ENDPOINTS}/ep-mine"},
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": f"{FUNCTIONS}:versioned"},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/train.csv"},
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/uploads/*"})
    sagemaker = make("sagemaker", emulator.url)
    assert sagemaker.describe_endpoint(EndpointName="ep-mine")["EndpointName"] == "ep-mine"
    sagemaker.delete_endpoint(EndpointName="ep-mine")
    assert_denied(refused(lambda: sagemaker.delete_endpoint(EndpointName="ep-theirs")), "AccessDeniedException", 400)
    lam = make("lambda", gateway.url)
    assert json.loads(lam.invoke(FunctionName="versioned", Payload=b'{"a": 1}')["Payload"].read()) == {"a": 1}
    # a qualified invocation acts on the qualified ARN, which a policy on the unqualified one does not cover
    assert_denied(refused(lambda: lam.invoke(FunctionName="versioned", Qualifier=version)), "AccessDeniedException",
                  403)
    s3 = make("s3", emulator.url)
    assert s3.get_object(Bucket="data", Key="train.csv")["Body"].read() == b"x,y\n"
    s3.put_object(Bucket="data", Key="uploads/a.csv", Body=b"signed body")  # the signature covers the body
    assert_denied(refused(lambda: s3.put_object(Bucket="data", Key="train.csv", Body=b"")), "AccessDenied", 403)


def test_errors_in_each_protocol(emulator):
    make = user(emulator, "nobody")
    assert_denied(refused(lambda: make("iam", emulator.url).list_roles()), "AccessDenied", 403,
                  no_allow("arn:aws:iam::123456789012:user/nobody", "iam:ListRoles", "*"))
    assert_denied(refused(lambda: make("cloudformation", emulator.url).list_stacks()), "AccessDenied", 403)
    assert_denied(refused(lambda: make("ecr", emulator.url).describe_repositories()), "AccessDeniedException", 400)
    assert_denied(refused(lambda: make("logs", emulator.url).create_log_group(logGroupName="g")),
                  "AccessDeniedException", 400, no_allow("arn:aws:iam::123456789012:user/nobody",
                                                         "logs:CreateLogGroup", f"arn:aws:logs:us-east-1:{ACCOUNT}:"
                                                         "log-group:g"))
    assert make("sts", emulator.url).get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/nobody"
    stranger = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1",
                            aws_access_key_id="AKIAUNKNOWN0000000000", aws_secret_access_key="x")
    assert_denied(refused(stranger.list_endpoints), "UnrecognizedClientException", 400)
    iam = processes.client("iam", emulator.url)
    key = iam.create_access_key(UserName="nobody")["AccessKey"]["AccessKeyId"]
    forger = boto3.client("lambda", endpoint_url=emulator.url, region_name="us-east-1", aws_access_key_id=key,
                          aws_secret_access_key="not-the-secret")
    assert_denied(refused(forger.list_functions), "InvalidSignatureException", 403)
    assert requests.get(f"{emulator.url}/data/train.csv", timeout=10).status_code == 403  # anonymous
    anonymous = requests.get(f"{emulator.url}/data", timeout=10)
    assert anonymous.status_code == 403 and "<Code>AccessDenied</Code>" in anonymous.text
    missing = requests.get(f"{emulator.url}/no-such-bucket/x", timeout=10)  # S3 names a missing bucket to anyone
    assert missing.status_code == 404 and "<Code>NoSuchBucket</Code>" in missing.text


def test_the_root_key_does_everything(emulator, gateway):
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "cfn-made", "AssumeRolePolicyDocument": TRUST}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "cfn-made"}}}}
    cloudformation = processes.client("cloudformation", emulator.url)
    cloudformation.create_stack(StackName="root-stack", TemplateBody=json.dumps(template),
                                Capabilities=["CAPABILITY_NAMED_IAM"])
    assert cloudformation.describe_stacks(StackName="root-stack")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    role = processes.client("iam", emulator.url).get_role(RoleName="cfn-made")["Role"]["Arn"]
    sagemaker = processes.client("sagemaker", emulator.url)
    sagemaker.create_model(ModelName="root-model", ExecutionRoleArn=role, PrimaryContainer={"Image": "x"})
    create_endpoint(emulator.url, "ep-root")
    sagemaker.delete_endpoint(EndpointName="ep-root")
    assert processes.client("s3", emulator.url).get_object(Bucket="data", Key="train.csv")["Body"].read() == b"x,y\n"
    lam = processes.client("lambda", gateway.url, retries={"max_attempts": 0}, read_timeout=60)
    assert json.loads(lam.invoke(FunctionName="other", Payload=b'{"x": 1}')["Payload"].read()) == {"x": 1}


def test_enforcement_can_be_switched_off(tmp_path):
    proc = processes.Process("services.emulator", tmp_path, DOGOPS_IAM_ENFORCE=0)
    try:
        with serving_gateway(proc, (), DOGOPS_IAM_ENFORCE=0) as off:
            create_endpoint(proc.url, "ep-a")
            processes.deploy_function(proc.url, "other", ECHO)
            make = user(proc, "nobody")
            make("sagemaker", proc.url).delete_endpoint(EndpointName="ep-a")
            assert make("lambda", proc.url).list_functions()["Functions"]
            lam = make("lambda", off.url)
            assert json.loads(lam.invoke(FunctionName="other", Payload=b"{}")["Payload"].read()) == {}
    finally:
        proc.stop()
