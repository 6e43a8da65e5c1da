"""SigV4 as AWS checks it, on real emulator and gateway processes: botocore-signed calls to S3, IAM, STS and
SageMaker (emulator), SageMaker Runtime ``InvokeEndpoint`` and Lambda ``Invoke`` (gateway) and an ``AWS_IAM``
function URL, with the right secret, a wrong one, an unknown key, a skewed clock, a body changed after signing and
STS session tokens; pre-signed S3 URLs; ``GetFunction``'s pre-signed ``Code.Location``. Each refusal is the code
boto3 raises on AWS, and the refused call leaves no trace."""

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import botocore.auth
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from services.stack import settings

from ..conftest import free_port
from . import processes
from .test_sagemaker_runtime import Backend, create_endpoint

FUNCTION, BUCKET, ENDPOINT, ROLE = "sig-fn", "sig-bucket", "sig-ep", "sig-session"
ROLE_ARN = f"arn:aws:iam::{settings.ACCOUNT}:role/{ROLE}"
SKEW = datetime.timedelta(minutes=10)


@dataclasses.dataclass
class Local:
    emulator: processes.Process
    gateway: processes.Process
    backend: Backend
    record: Path  # one line per invocation of FUNCTION: its tag
    function_url: str  # AWS_IAM

    def invoked(self, tag: str) -> bool:
        return tag in self.record.read_text().split()


def function_source(record: Path) -> str:
    """A function that records the tag of each invocation (Invoke: the payload's; function URL: the body's)."""
    return f'''
import json

def handler(event, context):
    tag = json.loads(event["body"])["tag"] if "rawPath" in event else event["tag"]
    with open({str(record)!r}, "a") as out:
        out.write(tag + "\\n")
    return {{"tag": tag}}
'''


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    logs = tmp_path_factory.mktemp("signatures")
    record = logs / "invocations.txt"
    record.touch()
    backend, port = Backend(), free_port()
    emulator = processes.emulator(logs, DOGOPS_FUNCTION_URL_BASE=f"http://127.0.0.1:{port}")
    gateway = None
    try:
        gateway = processes.gateway(logs, emulator.url, port=port, DOGOPS_LOG_DIR=logs)
        create_endpoint(emulator.url, ENDPOINT)
        processes.route(emulator.url, ENDPOINT, backend.url)
        processes.deploy_function(emulator.url, FUNCTION, function_source(record))
        lam = processes.client("lambda", emulator.url)
        url = lam.create_function_url_config(FunctionName=FUNCTION, AuthType="AWS_IAM")["FunctionUrl"]
        processes.client("s3", emulator.url).create_bucket(Bucket=BUCKET)
        iam = processes.client("iam", emulator.url)
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=ROLE, PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        yield Local(emulator, gateway, backend, record, url)
    finally:
        if gateway:
            gateway.stop()
        emulator.stop()
        backend.shutdown()


def aws_client(service: str, url: str, key: str = settings.ACCESS_KEY, secret: str | None = None,
               token: str | None = None, **config):
    """A boto3 client with these credentials (default: the root key and secret), never retrying."""
    return boto3.client(service, endpoint_url=url, region_name=settings.REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret or settings.root_secret(), aws_session_token=token,
                        config=Config(retries={"max_attempts": 0}, **config))


def session(local: Local) -> dict:
    """Temporary credentials of ROLE (AssumeRole with the root key)."""
    return processes.client("sts", local.emulator.url).assume_role(RoleArn=ROLE_ARN, RoleSessionName="tests")[
        "Credentials"]


def tampered(tag: str) -> str:
    """Another tag of the same length."""
    return tag[:-1] + ("y" if tag[-1] == "z" else "z")


# Each API: a call that leaves its tag's mark (checking the answer), and whether the tag's mark is there.

def _s3(client, tag):
    answer = client.put_object(Bucket=BUCKET, Key=tag, Body=tag.encode())
    assert answer["ETag"] == f'"{hashlib.md5(tag.encode()).hexdigest()}"'


def _s3_marked(local, tag):
    listed = processes.client("s3", local.emulator.url).list_objects_v2(Bucket=BUCKET, Prefix=tag)
    return tag in [item["Key"] for item in listed.get("Contents", [])]


def _iam(client, tag):
    assert client.create_user(UserName=tag)["User"]["Arn"] == f"arn:aws:iam::{settings.ACCOUNT}:user/{tag}"


def _iam_marked(local, tag):
    return tag in [user["UserName"] for user in processes.client("iam", local.emulator.url).list_users()["Users"]]


def _sts(client, tag):
    user = client.assume_role(RoleArn=ROLE_ARN, RoleSessionName=tag)["AssumedRoleUser"]
    assert user["Arn"] == f"arn:aws:sts::{settings.ACCOUNT}:assumed-role/{ROLE}/{tag}"


def _sagemaker(client, tag):
    answer = client.create_model(ModelName=tag, ExecutionRoleArn=ROLE_ARN,
                                 PrimaryContainer={"Image": "dogops-serving:local"})
    assert answer["ModelArn"].endswith(f":model/{tag}")


def _sagemaker_marked(local, tag):
    models = processes.client("sagemaker", local.emulator.url).list_models(MaxResults=100)["Models"]
    return tag in [model["ModelName"] for model in models]


def _runtime(client, tag):
    body = json.dumps({"tag": tag}).encode()
    assert client.invoke_endpoint(EndpointName=ENDPOINT, Body=body)["Body"].read() == body


def _runtime_marked(local, tag):
    return any(json.dumps({"tag": tag}).encode() == body for _, body in local.backend.requests)


def _lambda(client, tag):
    answer = client.invoke(FunctionName=FUNCTION, Payload=json.dumps({"tag": tag}))
    assert "FunctionError" not in answer and json.loads(answer["Payload"].read()) == {"tag": tag}


def _json_refusals(status: int) -> dict:
    return {"wrong-secret": (status, "InvalidSignatureException"),
            "unknown-key": (status, "UnrecognizedClientException"),
            "skewed": (status, "InvalidSignatureException"), "tampered": (status, "InvalidSignatureException"),
            "wrong-token": (status, "UnrecognizedClientException")}


QUERY_REFUSALS = {"wrong-secret": (403, "SignatureDoesNotMatch"), "unknown-key": (403, "InvalidClientTokenId"),
                  "skewed": (403, "SignatureDoesNotMatch"), "tampered": (403, "SignatureDoesNotMatch"),
                  "wrong-token": (403, "InvalidClientTokenId")}


@dataclasses.dataclass(frozen=True)
class Api:
    service: str
    on: str  # "emulator" or "gateway"
    call: Callable  # (client, tag)
    marked: Callable | None  # (local, tag) -> bool; None: the call leaves no state
    refusals: dict  # case -> (HTTP status, error code)

    def client(self, local: Local, **credentials):
        return aws_client(self.service, getattr(local, self.on).url, **credentials)

    def left_mark(self, local: Local, tag: str) -> bool:
        return self.marked is not None and self.marked(local, tag)


APIS = {
    "s3": Api("s3", "emulator", _s3, _s3_marked, {
        "wrong-secret": (403, "SignatureDoesNotMatch"), "unknown-key": (403, "InvalidAccessKeyId"),
        "skewed": (403, "RequestTimeTooSkewed"), "tampered": (400, "XAmzContentSHA256Mismatch"),
        "wrong-token": (400, "InvalidToken")}),
    "iam": Api("iam", "emulator", _iam, _iam_marked, QUERY_REFUSALS),
    "sts": Api("sts", "emulator", _sts, None, QUERY_REFUSALS),
    "sagemaker": Api("sagemaker", "emulator", _sagemaker, _sagemaker_marked, _json_refusals(400)),
    "sagemaker-runtime": Api("sagemaker-runtime", "gateway", _runtime, _runtime_marked, _json_refusals(403)),
    "lambda": Api("lambda", "gateway", _lambda, lambda local, tag: local.invoked(tag), _json_refusals(403)),
}
apis = pytest.mark.parametrize("api", APIS.values(), ids=APIS.keys())


def refused(local: Local, api: Api, client, tag: str, case: str, signing=contextlib.nullcontext()) -> str:
    """The call with ``tag`` (signed ``signing``) is refused with the case's code and leaves no mark; its
    message."""
    with pytest.raises(ClientError) as caught, signing:
        api.call(client, tag)
    error = caught.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == api.refusals[case]
    assert not api.left_mark(local, tag)
    return error["Error"]["Message"]


@apis
def test_the_right_secret_is_accepted(local, api):
    api.call(api.client(local), f"root-{api.service}")
    assert api.marked is None or api.marked(local, f"root-{api.service}")


@apis
def test_session_credentials_are_accepted_with_their_own_token_only(local, api):
    credentials = session(local)
    key, secret, token = credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    api.call(api.client(local, key=key, secret=secret, token=token), f"session-{api.service}")
    assert api.marked is None or api.marked(local, f"session-{api.service}")
    wrong = api.client(local, key=key, secret=secret, token=token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"))
    refused(local, api, wrong, f"bad-token-{api.service}", "wrong-token")
    missing = api.client(local, key=key, secret=secret)  # a session key without its token is no key at all
    refused(local, api, missing, f"no-token-{api.service}", "unknown-key")


@apis
def test_a_wrong_secret_is_refused(local, api):
    message = refused(local, api, api.client(local, secret=settings.root_secret() + "x"), f"wrong-{api.service}",
                      "wrong-secret")
    assert message.startswith("The request signature we calculated does not match the signature you provided.")


@apis
def test_an_unknown_key_is_refused(local, api):
    client = api.client(local, key="AKIAUNKNOWNKEY000000", secret="x" * 40)
    refused(local, api, client, f"stranger-{api.service}", "unknown-key")


@contextlib.contextmanager
def clock_off(monkeypatch, offset: datetime.timedelta):
    """botocore signs with its clock ``offset`` off."""
    now = botocore.auth.get_current_datetime
    with monkeypatch.context() as patched:
        patched.setattr(botocore.auth, "get_current_datetime", lambda: now() + offset)
        yield


@apis
@pytest.mark.parametrize("offset", [-SKEW, SKEW], ids=["past", "future"])
def test_a_request_signed_10_minutes_off_is_refused(local, api, offset, monkeypatch):
    tag = f"skew-{'past' if offset < SKEW else 'future'}-{api.service}"
    message = refused(local, api, api.client(local), tag, "skewed", clock_off(monkeypatch, offset))
    if api.service == "s3":
        assert message == "The difference between the request time and the current time is too large."
    else:
        assert message.startswith("Signature expired: ") and message.endswith(" 5 min.)")


def tamper_after_signing(client, old: bytes, new: bytes, rehash: bool = False) -> None:
    """Have ``client`` replace ``old`` with ``new`` in each request's body once signed (``rehash``: and declare
    the new body's SHA-256, as S3 signs it)."""

    def tamper(request, **_):
        body = request.body.read() if hasattr(request.body, "read") else request.body or b""
        body = body.encode() if isinstance(body, str) else body
        assert old in body
        request.body = body.replace(old, new)
        if rehash:
            request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(request.body).hexdigest()

    client.meta.events.register("before-send", tamper)


@apis
def test_a_body_changed_after_signing_is_refused(local, api):
    tag = f"tamper-{api.service}"
    client = api.client(local)
    tamper_after_signing(client, tag.encode(), tampered(tag).encode())
    refused(local, api, client, tag, "tampered")
    assert not api.left_mark(local, tampered(tag))


def test_an_s3_body_changed_with_its_declared_hash_is_refused(local):
    client, tag = APIS["s3"].client(local), "tamper-rehashed"
    tamper_after_signing(client, tag.encode(), tampered(tag).encode(), rehash=True)
    with pytest.raises(ClientError) as caught:
        _s3(client, tag)
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert not _s3_marked(local, tag) and not _s3_marked(local, tampered(tag))


# The function URL (AuthType AWS_IAM): SigV4 as awscurl signs it; every refusal is 403 {"Message":"Forbidden"}.

def url_request(local: Local, tag: str, key: str = settings.ACCESS_KEY, secret: str | None = None,
                token: str | None = None, sent: str | None = None) -> requests.Response:
    """POST ``{"tag": tag}`` to the function URL, signed with these credentials; ``sent``: the tag actually sent."""
    body = json.dumps({"tag": tag}).encode()
    aws = AWSRequest(method="POST", url=local.function_url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret or settings.root_secret(), token), "lambda", settings.REGION).add_auth(aws)
    sent_body = json.dumps({"tag": sent}).encode() if sent else body
    return requests.post(local.function_url, data=sent_body, headers=dict(aws.headers.items()), timeout=60)


def test_a_signed_function_url_request_gets_the_functions_answer(local):
    answer = url_request(local, "url-root")
    assert answer.status_code == 200 and answer.json() == {"tag": "url-root"} and local.invoked("url-root")
    credentials = session(local)
    answer = url_request(local, "url-session", credentials["AccessKeyId"], credentials["SecretAccessKey"],
                         credentials["SessionToken"])
    assert answer.status_code == 200 and answer.json() == {"tag": "url-session"} and local.invoked("url-session")


@pytest.mark.parametrize("case", ["unsigned", "wrong-secret", "unknown-key", "past", "future", "tampered",
                                  "wrong-token"])
def test_a_function_url_refuses_bad_signatures(local, case, monkeypatch):
    tag = f"url-{case}"
    if case in ("past", "future"):
        with clock_off(monkeypatch, SKEW if case == "future" else -SKEW):
            answer = url_request(local, tag)
    elif case == "unsigned":
        answer = requests.post(local.function_url, json={"tag": tag}, timeout=60)
    elif case == "wrong-token":
        credentials = session(local)
        answer = url_request(local, tag, credentials["AccessKeyId"], credentials["SecretAccessKey"], "not-its-token")
    else:
        answer = url_request(local, tag, **{"wrong-secret": {"secret": settings.root_secret() + "x"},
                                            "unknown-key": {"key": "AKIAUNKNOWNKEY000000", "secret": "x" * 40},
                                            "tampered": {"sent": tampered(tag)}}.get(case, {}))
    assert answer.status_code == 403 and answer.json() == {"Message": "Forbidden"}
    assert not local.invoked(tag) and not local.invoked(tampered(tag))


# Pre-signed S3 URLs (query-string SigV4, as boto3's s3v4 presigner writes them).

def s3_error(answer: requests.Response) -> tuple[int, str, str]:
    """An S3 error reply as botocore parses it: status, code, message."""
    parsed = create_parser("rest-xml").parse(
        {"status_code": answer.status_code, "headers": answer.headers, "body": answer.content}, None)
    return answer.status_code, parsed["Error"]["Code"], parsed["Error"]["Message"]


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


@pytest.fixture(scope="module")
def presigner(local):
    return processes.client("s3", local.emulator.url, signature_version="s3v4")


def presigned(presigner, method: str, key: str, expires: int = 60) -> str:
    return presigner.generate_presigned_url(method, Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=expires)


def test_presigned_put_and_get_are_accepted(local, presigner):
    assert requests.put(presigned(presigner, "put_object", "presigned"), data=b"by url", timeout=10).status_code == 200
    answer = requests.get(presigned(presigner, "get_object", "presigned"), timeout=10)
    assert answer.status_code == 200 and answer.content == b"by url"


@pytest.mark.parametrize("change", ["key", "expires", "signature", "credential", "added-parameter"])
def test_a_tampered_presigned_url_is_refused(local, presigner, change):
    key = f"presigned-{change}"
    url = presigned(presigner, "put_object", key)
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    url = {"key": lambda: url.replace(f"/{key}?", f"/{key}-other?"),
           "expires": lambda: with_query(url, **{"X-Amz-Expires": "3600"}),
           "signature": lambda: with_query(url, **{"X-Amz-Signature": signature[::-1]}),
           "credential": lambda: with_query(url, **{"X-Amz-Credential": dict(parse_qsl(urlsplit(url).query))[
               "X-Amz-Credential"].replace(settings.REGION, "eu-west-1")}),
           "added-parameter": lambda: with_query(url, versionId="x")}[change]()
    answer = requests.put(url, data=b"tampered", timeout=10)
    assert s3_error(answer)[:2] == (403, "SignatureDoesNotMatch")
    assert not _s3_marked(local, key) and not _s3_marked(local, f"{key}-other")


def test_an_expired_presigned_url_is_refused(local, presigner):
    processes.client("s3", local.emulator.url).put_object(Bucket=BUCKET, Key="expiring", Body=b"old")
    get, put = presigned(presigner, "get_object", "expiring", 1), presigned(presigner, "put_object", "expiring", 1)
    time.sleep(2.1)
    assert s3_error(requests.get(get, timeout=10)) == (403, "AccessDenied", "Request has expired")
    assert s3_error(requests.put(put, data=b"new", timeout=10)) == (403, "AccessDenied", "Request has expired")
    body = processes.client("s3", local.emulator.url).get_object(Bucket=BUCKET, Key="expiring")["Body"].read()
    assert body == b"old"


# GetFunction's Code.Location: the deployed zip, pre-signed with the root key; nothing else opens it.

def lambda_error(answer: requests.Response) -> tuple[int, str, str]:
    parsed = create_parser("rest-json").parse(
        {"status_code": answer.status_code, "headers": answer.headers, "body": answer.content}, None)
    return answer.status_code, parsed["Error"]["Code"], parsed["Error"]["Message"]


@pytest.fixture(scope="module")
def code(local) -> dict:
    return processes.client("lambda", local.emulator.url).get_function(FunctionName=FUNCTION)


def test_code_location_downloads_the_deployed_zip(local, code):
    location = code["Code"]["Location"]
    assert location.startswith(f"{local.emulator.url}/_dogops/lambda/{settings.REGION}/{FUNCTION}/code?")
    answer = requests.get(location, timeout=10)
    assert answer.status_code == 200
    assert base64.b64encode(hashlib.sha256(answer.content).digest()).decode() == code["Configuration"]["CodeSha256"]
    assert "lambda_function.py" in zipfile.ZipFile(io.BytesIO(answer.content)).namelist()


def test_code_location_through_the_gateway_is_on_the_gateway(local, code):
    """``dogops env`` points Lambda's control plane at the gateway: the Location it hands out opens there."""
    through = processes.client("lambda", local.gateway.url).get_function(FunctionName=FUNCTION)
    location = through["Code"]["Location"]
    assert location.startswith(f"{local.gateway.url}/_dogops/lambda/")
    answer = requests.get(location, timeout=10)
    assert answer.status_code == 200
    assert base64.b64encode(hashlib.sha256(answer.content).digest()).decode() == code["Configuration"]["CodeSha256"]


def test_an_anonymous_bucket_is_not_created(local):
    answer = requests.put(f"{local.emulator.url}/anonymous-bucket", timeout=10)
    assert answer.status_code == 403 and "<Code>AccessDenied</Code>" in answer.text
    names = [b["Name"] for b in processes.client("s3", local.emulator.url).list_buckets()["Buckets"]]
    assert "anonymous-bucket" not in names
    missing = requests.get(f"{local.emulator.url}/anonymous-bucket/x", timeout=10)
    assert missing.status_code == 404 and "<Code>NoSuchBucket</Code>" in missing.text  # as S3 answers anyone


def _shifted(stamp: str, seconds: int) -> str:
    when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ") + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y%m%dT%H%M%SZ")


@pytest.mark.parametrize("change", ["signature", "date", "expires", "function", "expired"])
def test_a_tampered_code_location_is_refused(local, code, change):
    location = code["Code"]["Location"]
    query = dict(parse_qsl(urlsplit(location).query))
    url = {"signature": lambda: with_query(location, **{"X-Amz-Signature": query["X-Amz-Signature"][::-1]}),
           "date": lambda: with_query(location, **{"X-Amz-Date": _shifted(query["X-Amz-Date"], 1)}),
           "expires": lambda: with_query(location, **{"X-Amz-Expires": "604800"}),
           "function": lambda: location.replace(f"/{FUNCTION}/code?", "/test-function/code?"),
           "expired": lambda: with_query(location, **{"X-Amz-Date": _shifted(query["X-Amz-Date"], -700)})}[change]()
    status, error, message = lambda_error(requests.get(url, timeout=10))
    assert (status, error) == (403, "InvalidSignatureException")
    assert message == ("Request has expired" if change == "expired" else
                       "The request signature we calculated does not match the signature you provided. Check your "
                       "AWS Secret Access Key and signing method. Consult the service documentation for details.")


def test_unsigned_code_download_is_refused(local):
    answer = requests.get(f"{local.emulator.url}/_dogops/lambda/{settings.REGION}/{FUNCTION}/code", timeout=10)
    assert lambda_error(answer) == (403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    assert b"PK" not in answer.content
