"""The promotion rehearsal on the compose stack: ``dogops promote apply`` pushes the image the suite just tested
to the stack's registry (through ECR), preflights it, plans and applies the ``dev`` CloudFormation stack; the
endpoint and function CloudFormation created are then served by the local stack and answer a real photo through
the function URL. Re-applying changes nothing; a new model rolls the endpoint without a failed request; a new
instance count adds and retires containers; the function's own role is refused what it must not do; ``dogops
destroy --images`` leaves nothing behind.

The tests run in file order and share one promoted stage (compose mode only: see conftest.py).
"""

import base64
import gzip
import json
import os
import subprocess
import threading
import time

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from services.hosting.endpoints import hosted_endpoints

from .conftest import NO_RETRIES, client
from .stacks import BIN, ROOT
from .test_flow import _assert_top5

STAGE = "dev"
STACK = ENDPOINT = f"dogops-{STAGE}"
FUNCTION = f"dogops-{STAGE}-predict"
MODEL_KEY = "training/dogops-local/output/model.tar.gz"


def dogops(stack_env, *args: str, timeout: float = 900) -> str:
    """Run the ``dogops`` command line as a user with ``eval "$(dogops env)"`` would; its output (echoed)."""
    result = subprocess.run([str(BIN / "dogops"), *args], cwd=ROOT, env={**os.environ, **stack_env},
                            capture_output=True, text=True, timeout=timeout)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, f"dogops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _signed_post(session, url: str, body: bytes, region: str) -> requests.Response:
    """POST to a function URL signed with SigV4 (service ``lambda``), as an AWS_IAM caller does."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(session.get_credentials(), "lambda", region).add_auth(request)
    return requests.post(url, data=body, headers=dict(request.headers), timeout=120)


@pytest.fixture(scope="module")
def promoted(stack_env, tested_images):
    """The ``dev`` stage applied from the suite's tested serving image; destroyed (with its images) at the end."""
    model = f"s3://{stack_env['DOGOPS_BUCKET']}/{MODEL_KEY}"
    started = time.monotonic()
    out = dogops(stack_env, "promote", "apply", "--stage", STAGE, "--yes", "--model-data-url", model,
                 *([] if tested_images else ["--force"]))
    print(f"rehearsal: push + preflight + plan + apply + hosting in {time.monotonic() - started:.1f} s")
    yield out
    # Whatever the tests got to: nothing of the stage may outlive the module (a no-op after the destroy test).
    subprocess.run([str(BIN / "dogops"), "destroy", "--stage", STAGE, "--images"], cwd=ROOT,
                   env={**os.environ, **stack_env}, timeout=600, capture_output=True)


@pytest.fixture(scope="module")
def function_url(promoted, lambda_) -> str:
    return lambda_.get_function_url_config(FunctionName=FUNCTION, Qualifier="live")["FunctionUrl"]


def test_apply_plans_preflights_and_creates_the_stack(promoted, session, stack_env):
    assert "preflight" in promoted and "/month" in promoted
    for logical_id in ("Model", "EndpointConfig", "Endpoint", "Function", "FunctionUrl"):
        assert f"create               {logical_id} " in promoted
    cfn = client(session, stack_env, "cloudformation")
    assert cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert STACK in hosted_endpoints()


def test_the_function_url_answers_a_photo(session, stack_env, function_url, sample_jpeg):
    body = json.dumps({"image": base64.b64encode(sample_jpeg).decode()}).encode()
    answer = _signed_post(session, function_url, body, stack_env["AWS_DEFAULT_REGION"])
    assert answer.status_code == 200, answer.text
    _assert_top5(answer.json()["predictions"])
    unsigned = requests.post(function_url, data=body, timeout=60)
    assert unsigned.status_code == 403 and unsigned.json() == {"Message": "Forbidden"}


def test_reapplying_changes_nothing(promoted, stack_env, session):
    endpoint = client(session, stack_env, "sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    image = client(session, stack_env, "sagemaker").describe_model(
        ModelName=_model_name(session, stack_env))["PrimaryContainer"]["Image"]
    out = dogops(stack_env, "promote", "apply", "--stage", STAGE, "--yes", "--image", image, "--model-data-url",
                 f"s3://{stack_env['DOGOPS_BUCKET']}/{MODEL_KEY}")
    assert f"stack {STACK}: no changes" in out
    again = client(session, stack_env, "sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert again["EndpointConfigName"] == endpoint["EndpointConfigName"]


def _model_name(session, stack_env) -> str:
    sagemaker = client(session, stack_env, "sagemaker")
    config = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    return sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"]


def test_a_new_model_rolls_the_endpoint_without_a_failed_request(promoted, session, stack_env, runtime, s3,
                                                                 sample_jpeg):
    bucket = stack_env["DOGOPS_BUCKET"]
    # The same files packed again (another gzip time stamp): other bytes, so another pinned copy to roll to.
    packed = s3.get_object(Bucket=bucket, Key=MODEL_KEY)["Body"].read()
    s3.put_object(Bucket=bucket, Key="retrained/model.tar.gz", Body=gzip.compress(gzip.decompress(packed), mtime=1))
    sagemaker = client(session, stack_env, "sagemaker")
    before = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    image = sagemaker.describe_model(ModelName=_model_name(session, stack_env))["PrimaryContainer"]["Image"]
    statuses, done = [], threading.Event()

    def traffic():
        while not done.is_set():
            try:
                statuses.append(runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=sample_jpeg,
                                                        ContentType="image/jpeg")["ResponseMetadata"]["HTTPStatusCode"])
            except ClientError as exc:
                statuses.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
            time.sleep(0.2)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        out = dogops(stack_env, "promote", "apply", "--stage", STAGE, "--yes", "--image", image,
                     "--model-data-url", f"s3://{bucket}/retrained/model.tar.gz")
    finally:
        done.set()
        sender.join()
    assert "UPDATE_COMPLETE" in out
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] != before
    assert statuses and set(statuses) == {200}, statuses


def _endpoint_containers(count: int) -> list[str]:
    """The endpoint's running containers, once there are ``count`` (a retired one stops within 30 s)."""
    deadline = time.monotonic() + 90
    while True:
        names = subprocess.run(["docker", "ps", "--filter", f"label=dogops.endpoint={ENDPOINT}", "--format",
                                "{{.Names}}"], capture_output=True, text=True, check=True).stdout.split()
        if len(names) == count or time.monotonic() > deadline:
            return names
        time.sleep(1)


def _scaled_to(sagemaker, variant: str, count: int) -> tuple[int, int]:
    """``UpdateEndpointWeightsAndCapacities`` to ``count``; (current, desired) once the endpoint is in service."""
    sagemaker.update_endpoint_weights_and_capacities(EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[
        {"VariantName": variant, "DesiredInstanceCount": count}])
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating"
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig={"Delay": 2,
                                                                                         "MaxAttempts": 200})
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
    return described["CurrentInstanceCount"], described["DesiredInstanceCount"]


def test_a_new_instance_count_adds_and_retires_containers(promoted, session, stack_env, runtime, sample_jpeg):
    """The stage's endpoint to 2 instances and back, as its auto-scaling would: the host runner starts a second
    container of the model (the gateway sends to each in turn) and then retires the newer one."""
    sagemaker = client(session, stack_env, "sagemaker")
    variant = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]["VariantName"]
    [first] = _endpoint_containers(1)  # the roll's old container gone
    assert _scaled_to(sagemaker, variant, 2) == (2, 2)
    both = _endpoint_containers(2)
    assert len(both) == 2 and first in both
    time.sleep(3)  # the gateway's route cache
    for _ in range(4):  # two to each container
        answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=sample_jpeg, ContentType="image/jpeg",
                                         Accept="application/vnd.dogops.topk+json")
        _assert_top5(json.loads(answer["Body"].read())["predictions"])
    assert _scaled_to(sagemaker, variant, 1) == (1, 1)
    assert _endpoint_containers(1) == [first]  # the newer one left the route, then stopped


def _assumed(session, stack_env, role_arn: str) -> boto3.Session:
    creds = client(session, stack_env, "sts").assume_role(RoleArn=role_arn, RoleSessionName="rehearsal")[
        "Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=stack_env["AWS_DEFAULT_REGION"])


def _error(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_the_functions_role_may_predict_and_nothing_else(promoted, session, stack_env, lambda_, sample_jpeg):
    role = lambda_.get_function_configuration(FunctionName=FUNCTION)["Role"]
    as_function = _assumed(session, stack_env, role)
    runtime = client(as_function, stack_env, "sagemaker-runtime", NO_RETRIES)
    assert runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=sample_jpeg, ContentType="image/jpeg")[
        "ResponseMetadata"]["HTTPStatusCode"] == 200
    sagemaker = client(as_function, stack_env, "sagemaker", NO_RETRIES)
    denied = {
        "another endpoint": _error(lambda: runtime.invoke_endpoint(
            EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"], Body=sample_jpeg, ContentType="image/jpeg")),
        "the data bucket": _error(lambda: client(as_function, stack_env, "s3").get_object(
            Bucket=stack_env["DOGOPS_BUCKET"], Key=MODEL_KEY)),
        "DeleteEndpoint": _error(lambda: sagemaker.delete_endpoint(EndpointName=ENDPOINT)),
        "passing a role": _error(lambda: sagemaker.create_model(
            ModelName="escalated", ExecutionRoleArn=role, PrimaryContainer={"Image": "x"})),
        "another function": _error(lambda: client(as_function, stack_env, "lambda", NO_RETRIES).invoke(
            FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=b"{}")),
    }
    assert denied == {"another endpoint": "AccessDeniedException", "the data bucket": "AccessDenied",
                      "DeleteEndpoint": "AccessDeniedException", "passing a role": "AccessDeniedException",
                      "another function": "AccessDeniedException"}
    assert client(session, stack_env, "sagemaker").describe_endpoint(EndpointName=ENDPOINT)[
        "EndpointStatus"] == "InService"


def test_status_lists_the_stage_and_its_cost(promoted, stack_env):
    out = dogops(stack_env, "status", "--aws")
    assert ENDPOINT in out and "/h" in out


def test_destroy_leaves_nothing(promoted, session, stack_env):
    out = dogops(stack_env, "destroy", "--stage", STAGE, "--images")
    assert "nothing tagged" in out
    assert STACK not in hosted_endpoints()
    assert ENDPOINT not in [e["EndpointName"] for e in client(session, stack_env, "sagemaker").list_endpoints()[
        "Endpoints"]]
    repositories = client(session, stack_env, "ecr").describe_repositories()["repositories"]
    assert not [r for r in repositories if r["repositoryName"].startswith(STACK + "/")]
