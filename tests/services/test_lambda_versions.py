"""Versions, aliases and provisioned concurrency through real boto3 clients: the control plane on the emulator, the
invocations on a real gateway (issue 16, point 3)."""

import base64
import json
import math
import time

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dogops.lambda_package import build_zip

from . import processes

APP = b'''
import os
VERSION = 1

def handler(event, context):
    return {"code": VERSION, "memory": context.memory_limit_in_mb, "version": context.function_version,
            "arn": context.invoked_function_arn, "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
'''


def code(version: int) -> bytes:
    return build_zip({"app.py": APP.replace(b"VERSION = 1", f"VERSION = {version}".encode())})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    emulator = processes.emulator(logs)
    gateway = processes.gateway(logs, emulator.url, DOGOPS_LOG_DIR=logs,
                                DOGOPS_STATE_DIR=tmp_path_factory.mktemp("state"))
    yield emulator, gateway
    gateway.stop()
    emulator.stop()


@pytest.fixture(scope="module")
def control(stack):
    emulator, _ = stack
    iam = processes.client("iam", emulator.url)
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="versions", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    return processes.client("lambda", emulator.url), role


@pytest.fixture(scope="module")
def client(stack):
    return processes.client("lambda", stack[1].url, retries={"max_attempts": 0}, read_timeout=30)


def deploy(control, name: str, **args) -> None:
    lam, role = control
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={
        "ZipFile": code(1)}, **args)


def call(client, name, **kw):
    out = client.invoke(FunctionName=name, Payload=b"{}", **kw)
    return out, json.loads(out["Payload"].read())


def wait_for(check, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.2)


def test_a_version_keeps_its_code_and_configuration(control, client):
    lam, _ = control
    deploy(control, "kept", MemorySize=256)
    assert lam.publish_version(FunctionName="kept")["Version"] == "1"
    lam.update_function_code(FunctionName="kept", ZipFile=code(2))
    lam.get_waiter("function_updated_v2").wait(FunctionName="kept")
    lam.update_function_configuration(FunctionName="kept", MemorySize=512)
    wait_for(lambda: call(client, "kept")[1]["code"] == 2)  # $LATEST has the new code (after a moment, as AWS)
    for name, kw in (("kept", {"Qualifier": "1"}), ("kept:1", {}),
                     ("arn:aws:lambda:us-east-1:123456789012:function:kept:1", {})):
        out, body = call(client, name, **kw)
        assert out["ExecutedVersion"] == "1" and "FunctionError" not in out
        assert (body["code"], body["memory"], body["version"]) == (1, "256", "1")
        assert body["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:kept:1"
    wait_for(lambda: call(client, "kept")[1]["memory"] == "512")
    out, body = call(client, "kept")
    assert out["ExecutedVersion"] == "$LATEST" and (body["code"], body["version"]) == (2, "$LATEST")


def test_an_unknown_version_or_alias_is_a_404(control, client):
    deploy(control, "lonely")
    for qualifier in ("7", "nope"):
        with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
            client.invoke(FunctionName="lonely", Qualifier=qualifier)
        assert caught.value.response["Error"]["Message"] == (
            f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:lonely:{qualifier}")


def test_an_alias_routes_to_its_version(control, client):
    lam, _ = control
    deploy(control, "aliased")
    lam.publish_version(FunctionName="aliased")
    lam.update_function_code(FunctionName="aliased", ZipFile=code(2))
    lam.publish_version(FunctionName="aliased")
    lam.create_alias(FunctionName="aliased", Name="live", FunctionVersion="1")
    out, body = call(client, "aliased", Qualifier="live")
    assert out["ExecutedVersion"] == "1" and body["code"] == 1
    assert body["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:aliased:live"
    lam.update_alias(FunctionName="aliased", Name="live", FunctionVersion="2")
    wait_for(lambda: call(client, "aliased:live")[0]["ExecutedVersion"] == "2")


def test_weighted_alias_splits_traffic_within_a_binomial_bound(control, client):
    lam, _ = control
    deploy(control, "weighted")
    lam.publish_version(FunctionName="weighted")
    lam.update_function_code(FunctionName="weighted", ZipFile=code(2))
    lam.publish_version(FunctionName="weighted")
    share, n = 0.3, 200
    lam.create_alias(FunctionName="weighted", Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": share}})
    executed = []
    for _ in range(n):
        out, body = call(client, "weighted", Qualifier="canary")
        assert body["code"] == int(out["ExecutedVersion"])  # the header names the version that ran
        executed.append(out["ExecutedVersion"])
    # 5 standard deviations of Binomial(n, share): a correct router fails this about once in 3.5 million runs
    tolerance = 5 * math.sqrt(n * share * (1 - share))
    assert abs(executed.count("2") - n * share) <= tolerance, executed.count("2")
    assert set(executed) == {"1", "2"}


def test_provisioned_concurrency_initialises_workers_then_is_ready(control, client):
    lam, _ = control
    deploy(control, "provisioned")
    lam.publish_version(FunctionName="provisioned")
    lam.create_alias(FunctionName="provisioned", Name="warm", FunctionVersion="1")
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    put = lam.put_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="warm",
                                                 ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (put["Status"], put["RequestedProvisionedConcurrentExecutions"],
            put["AllocatedProvisionedConcurrentExecutions"]) == ("IN_PROGRESS", 2, 0)
    wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="warm")[
        "Status"] == "READY", 30)
    got = lam.get_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="warm")
    assert got["AllocatedProvisionedConcurrentExecutions"] == got["AvailableProvisionedConcurrentExecutions"] == 2
    listed = lam.list_provisioned_concurrency_configs(FunctionName="provisioned")["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == ["arn:aws:lambda:us-east-1:123456789012:function:provisioned:warm"]
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved - 2
    with pytest.raises(lam.exceptions.ResourceConflictException) as caught:  # one config per version
        lam.put_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="1",
                                               ProvisionedConcurrentExecutions=1)
    assert caught.value.response["Error"]["Message"] == "Version is pointed by a Provisioned Concurrency alias"
    out, body = call(client, "provisioned", Qualifier="warm", LogType="Tail")
    assert body["init"] == "provisioned-concurrency" and out["ExecutedVersion"] == "1"
    report = [line for line in base64.b64decode(out["LogResult"]).decode().splitlines() if line.startswith("REPORT")]
    assert report and "Init Duration" not in report[0]  # an initialised worker: no cold start
    assert call(client, "provisioned")[1]["init"] == "on-demand"  # $LATEST is not provisioned
    lam.delete_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="warm")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="warm")
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved


def test_provisioned_concurrency_is_refused_on_latest_and_beyond_reserved_concurrency(control):
    lam, _ = control
    deploy(control, "bounded")
    lam.publish_version(FunctionName="bounded")
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.put_provisioned_concurrency_config(FunctionName="bounded", Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert caught.value.response["Error"]["Message"] == ("Provisioned Concurrency Configs cannot be applied to "
                                                         "unpublished function versions.")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName="bounded", Qualifier="5",
                                               ProvisionedConcurrentExecutions=1)
    lam.put_function_concurrency(FunctionName="bounded", ReservedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(FunctionName="bounded", Qualifier="1",
                                               ProvisionedConcurrentExecutions=2)
    lam.update_function_code(FunctionName="bounded", ZipFile=code(2))
    lam.publish_version(FunctionName="bounded")
    lam.create_alias(FunctionName="bounded", Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.put_provisioned_concurrency_config(FunctionName="bounded", Qualifier="canary",
                                               ProvisionedConcurrentExecutions=1)
    assert caught.value.response["Error"]["Message"] == "Alias with weights can not be used with Provisioned Concurrency"
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    deploy(control, "greedy")
    lam.publish_version(FunctionName="greedy")
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.put_provisioned_concurrency_config(FunctionName="greedy", Qualifier="1",
                                               ProvisionedConcurrentExecutions=unreserved - 99)
    assert caught.value.response["Error"]["Message"] == ("Specified ConcurrentExecutions for function decreases "
                                                         "account's UnreservedConcurrentExecution below its minimum "
                                                         "value of [100].")


@pytest.mark.parametrize("version, weights, error, message", [
    ("1", {"1": 0.5}, "InvalidParameterValueException",
     "Invalid function version 1. Function version 1 is already included in routing configuration."),
    ("$LATEST", {"1": 0.5}, "InvalidParameterValueException",
     "$LATEST is not supported for an alias pointing to more than 1 version"),
    ("1", {"9": 0.5}, "ResourceNotFoundException", None),
    ("1", {"2": 1.5}, "ValidationException",
     "1 validation error detected: Value '{2=1.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy "
     "constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must "
     "have value greater than or equal to 0.0, Member must not be null]"),
    ("1", {"live": 0.5}, "ValidationException", None),
])
def test_an_alias_routing_config_is_checked(control, version, weights, error, message):
    lam, _ = control
    if "routed" not in {f["FunctionName"] for f in lam.list_functions()["Functions"]}:
        deploy(control, "routed")
        lam.publish_version(FunctionName="routed")
        lam.update_function_code(FunctionName="routed", ZipFile=code(2))
        lam.publish_version(FunctionName="routed")
    with pytest.raises(lam.exceptions.ClientError) as caught:
        lam.create_alias(FunctionName="routed", Name="checked", FunctionVersion=version,
                         RoutingConfig={"AdditionalVersionWeights": weights})
    assert caught.value.response["Error"]["Code"] == error
    if message:
        assert caught.value.response["Error"]["Message"] == message
    lam.create_alias(FunctionName="routed", Name="checked", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ClientError) as caught:  # UpdateAlias checks the same
        lam.update_alias(FunctionName="routed", Name="checked", FunctionVersion=version,
                         RoutingConfig={"AdditionalVersionWeights": weights})
    assert caught.value.response["Error"]["Code"] == error
    lam.delete_alias(FunctionName="routed", Name="checked")


def test_the_gateways_provisioning_route_takes_only_the_root_key(stack):
    """An IAM user cannot read or mark provisioned concurrency configs through the emulator's route for the
    gateway."""
    emulator, _ = stack
    iam = processes.client("iam", emulator.url)
    iam.create_user(UserName="someone")
    key = iam.create_access_key(UserName="someone")["AccessKey"]
    url = emulator.url + "/2019-09-30/dogops/provisioned-concurrency"
    for method in ("GET", "POST"):
        signed = AWSRequest(method, url, data=b"{}")
        SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "lambda", "us-east-1").add_auth(signed)
        answer = requests.request(method, url, data=b"{}", headers=dict(signed.headers), timeout=10)
        assert answer.status_code == 403, answer.text
