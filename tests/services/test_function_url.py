"""Lambda function URLs end to end: a CloudFormation stack (function, version, alias ``live``, an ``AWS_IAM``
URL on the alias) on a real emulator, a real gateway serving the URL it reports; SigV4 as boto3 signs it."""

import base64
import json
import time

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dogops.lambda_package import build_zip
from services.stack import settings

from ..conftest import free_port
from .processes import client, emulator, gateway

APP = b'''
import base64

def handler(event, context):
    path = event.get("rawPath")
    if path == "/proxy":
        return {"statusCode": 201, "headers": {"X-Answer": "42", "Content-Type": "image/png"},
                "cookies": ["a=1; Path=/", "b=2"], "body": base64.b64encode(b"\\x89PNG").decode(),
                "isBase64Encoded": True}
    if path == "/raise":
        raise ValueError("boom")
    if path == "/bad-proxy":
        return {"statusCode": "not a number"}
    return {"event": event, "arn": context.invoked_function_arn}
'''
TEMPLATE = {
    "Parameters": {"Role": {"Type": "String"}},
    "Resources": {
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "url-fn", "Runtime": "python3.12", "Handler": "lambda_function.handler", "Timeout": 10,
            "Role": {"Ref": "Role"}, "Code": {"S3Bucket": "code", "S3Key": "fn.zip"}}},
        "Version": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Function"}}},
        "Alias": {"Type": "AWS::Lambda::Alias", "Properties": {
            "FunctionName": {"Ref": "Function"}, "FunctionVersion": {"Fn::GetAtt": ["Version", "Version"]},
            "Name": "live"}},
        "Url": {"Type": "AWS::Lambda::Url", "DependsOn": "Alias", "Properties": {
            "TargetFunctionArn": {"Fn::GetAtt": ["Function", "Arn"]}, "Qualifier": "live", "AuthType": "AWS_IAM"}},
    },
    "Outputs": {"Url": {"Value": {"Fn::GetAtt": ["Url", "FunctionUrl"]}},
                "UrlArn": {"Value": {"Ref": "Url"}}},
}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """An emulator whose function URLs name the gateway, the gateway, and the stack; yields both URLs."""
    logs = tmp_path_factory.mktemp("function-url")
    port = free_port()
    server = emulator(logs, DOGOPS_FUNCTION_URL_BASE=f"http://127.0.0.1:{port}")
    gw = gateway(logs, server.url, port=port)
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    role = client("iam", server.url).create_role(RoleName="url-fn", AssumeRolePolicyDocument=json.dumps(trust))
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket="code")
    s3.put_object(Bucket="code", Key="fn.zip", Body=build_zip({"lambda_function.py": APP}))
    cfn = client("cloudformation", server.url)
    cfn.create_stack(StackName="urls", TemplateBody=json.dumps(TEMPLATE),
                     Parameters=[{"ParameterKey": "Role", "ParameterValue": role["Role"]["Arn"]}])
    yield server.url, gw.url
    gw.stop()
    server.stop()


def _outputs(emulator_url: str) -> dict:
    stack_ = client("cloudformation", emulator_url).describe_stacks(StackName="urls")["Stacks"][0]
    assert stack_["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in stack_["Outputs"]}


def _signed(method: str, url: str, body: bytes = b"", key: str = settings.ACCESS_KEY, **headers) -> requests.Response:
    """The request as a SigV4 client (awscurl, botocore) sends it to a function URL."""
    aws = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(key, settings.root_secret()), "lambda", settings.REGION).add_auth(aws)
    return requests.request(method, url, data=body, headers=dict(aws.headers.items()), timeout=60)


def test_the_stack_reports_a_gateway_url_for_its_alias(local):
    emulator_url, gateway_url = local
    outputs = _outputs(emulator_url)
    config = client("lambda", emulator_url).get_function_url_config(FunctionName="url-fn", Qualifier="live")
    assert outputs["Url"] == config["FunctionUrl"]
    assert config["FunctionUrl"].startswith(f"{gateway_url}/lambda-url/") and config["FunctionUrl"].endswith("/")
    assert config["FunctionArn"] == outputs["UrlArn"] == \
        f"arn:aws:lambda:{settings.REGION}:{settings.ACCOUNT}:function:url-fn:live"
    assert config["AuthType"] == "AWS_IAM" and config["InvokeMode"] == "BUFFERED"


def test_a_signed_request_gets_the_functions_answer_with_a_2_0_event(local):
    url = _outputs(local[0])["Url"]
    url_id = url.rstrip("/").rsplit("/", 1)[1]
    answer = _signed("POST", url + "some/path?x=1&x=2&y=", b'{"a": 1}', **{
        "Content-Type": "application/json", "Cookie": "c=1; d=2", "X-Custom": "v"})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    result = answer.json()
    assert result["arn"].endswith(":function:url-fn:live")
    event = result["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["cookies"] == ["c=1", "d=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "v" and event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["http"]["path"] == "/some/path"
    assert context["http"]["sourceIp"] == "127.0.0.1" and context["accountId"] == settings.ACCOUNT
    assert context["domainName"] == f"{url_id}.lambda-url.{settings.REGION}.on.aws" and context["apiId"] == url_id
    assert context["authorizer"]["iam"]["accessKey"] == settings.ACCESS_KEY
    assert context["requestId"] and abs(context["timeEpoch"] / 1000 - time.time()) < 60


def test_unsigned_or_unknown_callers_are_forbidden(local):
    url = _outputs(local[0])["Url"]
    for answer in (requests.post(url, json={}, timeout=30), _signed("POST", url, b"{}", key="AKIAUNKNOWN0000000")):
        assert answer.status_code == 403 and answer.json() == {"Message": "Forbidden"}


def test_a_proxy_result_maps_to_status_headers_cookies_and_body(local):
    answer = _signed("GET", _outputs(local[0])["Url"] + "proxy")
    assert answer.status_code == 201 and answer.content == b"\x89PNG"
    assert answer.headers["X-Answer"] == "42" and answer.headers["Content-Type"] == "image/png"
    assert answer.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2"]


def test_function_errors_are_502_and_large_requests_413(local):
    url = _outputs(local[0])["Url"]
    assert _signed("GET", url + "raise").status_code == 502
    assert _signed("GET", url + "bad-proxy").status_code == 502
    assert _signed("POST", url, b"x" * (6 * 1024 * 1024 + 1)).status_code == 413


def test_auth_none_lets_anyone_in_and_sends_binary_as_base64(local):
    emulator_url, gateway_url = local
    lam = client("lambda", emulator_url)
    url = lam.create_function_url_config(FunctionName="url-fn", AuthType="NONE")["FunctionUrl"]
    try:
        answer = requests.post(url + "bin", data=b"\xff\xd8\xff", headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert answer.status_code == 200
        event = answer.json()["event"]
        assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xd8\xff"
        assert event["requestContext"]["accountId"] == "anonymous" and "authorizer" not in event["requestContext"]
        assert answer.json()["arn"].endswith(":function:url-fn")
    finally:
        lam.delete_function_url_config(FunctionName="url-fn")


def test_a_url_goes_with_its_resource_and_its_stack(tmp_path):
    server = emulator(tmp_path, DOGOPS_FUNCTION_URL_BASE="http://127.0.0.1:1")
    try:
        s3, cfn, lam = (client(service, server.url) for service in ("s3", "cloudformation", "lambda"))
        s3.create_bucket(Bucket="code")
        s3.put_object(Bucket="code", Key="fn.zip", Body=build_zip({"lambda_function.py": APP}))
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole"}]}
        role = client("iam", server.url).create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust))
        parameters = [{"ParameterKey": "Role", "ParameterValue": role["Role"]["Arn"]}]
        cfn.create_stack(StackName="gone", TemplateBody=json.dumps(TEMPLATE), Parameters=parameters)
        assert [c["FunctionUrl"][:30] for c in lam.list_function_url_configs(FunctionName="url-fn")[
            "FunctionUrlConfigs"]] == ["http://127.0.0.1:1/lambda-url/"]
        without = {**TEMPLATE, "Resources": {k: v for k, v in TEMPLATE["Resources"].items() if k != "Url"},
                   "Outputs": {}}
        cfn.update_stack(StackName="gone", TemplateBody=json.dumps(without), Parameters=parameters)
        assert lam.list_function_url_configs(FunctionName="url-fn")["FunctionUrlConfigs"] == []
        cfn.delete_stack(StackName="gone")
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.get_function(FunctionName="url-fn")
    finally:
        server.stop()
