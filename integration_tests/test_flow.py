"""The whole chain on a running stack, through real boto3 clients: S3, SageMaker, SageMaker Runtime, Lambda."""

import base64
import json
import math
import subprocess

import requests

from .stacks import BIN, GATEWAY, ROOT


def _proxy_answer(response) -> dict:
    assert response["StatusCode"] == 200 and "FunctionError" not in response, response
    answer = json.loads(response["Payload"].read())
    assert answer["headers"]["Content-Type"] == "application/json"
    return {"statusCode": answer["statusCode"], **json.loads(answer["body"])}


def _assert_top5(predictions):
    assert [p["rank"] for p in predictions] == [1, 2, 3, 4, 5]
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    for p in predictions:
        assert math.isclose(math.exp(p["log_probability"]), p["probability"], rel_tol=1e-3, abs_tol=1e-6)


def test_data_and_trained_model_are_in_the_emulators_s3(s3, stack_env):
    bucket = stack_env["DOGOPS_BUCKET"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert any(k.startswith("data/train/") for k in keys)
    assert any(k.endswith("/output/model.tar.gz") for k in keys)


def test_endpoint_and_function_were_deployed_through_the_control_planes(session, stack_env):
    sagemaker = session.client("sagemaker", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    endpoint = sagemaker.describe_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"])
    assert endpoint["EndpointStatus"] == "InService"
    lambda_control = session.client("lambda", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    function = lambda_control.get_function(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"])
    assert function["Configuration"]["Environment"]["Variables"]["ENDPOINT_NAME"] == stack_env["DOGOPS_ENDPOINT_NAME"]
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 3


def test_invoke_endpoint_answers_as_aws_does(runtime, stack_env, sample_jpeg):
    response = runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"], Body=sample_jpeg,
                                       ContentType="image/jpeg", Accept="application/json")
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    log_probs = json.loads(response["Body"].read())[0]
    assert math.isclose(sum(math.exp(v) for v in log_probs), 1.0, rel_tol=1e-4)


def test_custom_attributes_reach_the_container(runtime, stack_env, sample_jpeg):
    response = runtime.invoke_endpoint(EndpointName=stack_env["DOGOPS_ENDPOINT_NAME"], Body=sample_jpeg,
                                       ContentType="application/x-image", CustomAttributes="top_k=3")
    assert len(json.loads(response["Body"].read())["predictions"]) == 3


def test_lambda_classifies_a_photo_by_url(lambda_, stack_env):
    payload = json.dumps({"url": f"{stack_env['DOGOPS_SAMPLES_URL']}/dog.jpg"})
    answer = _proxy_answer(lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=payload))
    assert answer["statusCode"] == 200
    _assert_top5(answer["predictions"])


def test_lambda_classifies_an_uploaded_photo(lambda_, stack_env, sample_jpeg):
    payload = json.dumps({"image": base64.b64encode(sample_jpeg).decode()})
    answer = _proxy_answer(lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=payload))
    assert answer["statusCode"] == 200
    _assert_top5(answer["predictions"])


def test_api_route_runs_the_function_and_the_page_is_served(stack_env):
    photo = f"{stack_env['DOGOPS_SAMPLES_URL']}/dog.jpg"
    response = requests.post(GATEWAY + "/predict", json={"url": photo}, timeout=70)
    assert response.status_code == 200, response.text
    _assert_top5(response.json()["predictions"])
    page = requests.get(GATEWAY + "/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]


def test_dogops_invoke_prints_the_top_5(stack_env):
    env = {**stack_env, "PATH": str(BIN)}
    result = subprocess.run([str(BIN / "dogops"), "invoke", "--url", f"{stack_env['DOGOPS_SAMPLES_URL']}/dog.jpg"], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ranked = [line for line in result.stdout.splitlines() if line.strip()[:2].rstrip(".").isdigit()]
    assert len(ranked) == 5, result.stdout
