"""The gateway's ``InvokeEndpoint`` through a real boto3 ``sagemaker-runtime`` client (contracts §A.9, §F.3).

A real emulator holds the endpoint; behind the gateway stands either a small HTTP
server whose behaviour each request picks through ``CustomAttributes`` (``mode=...``),
or the real ``serve`` on a trained model.
"""

import contextlib
import json
import time
from http.server import BaseHTTPRequestHandler

import pytest

from services.gateway.sagemaker_runtime import EndpointUnavailable, invoked_variant

from ..conftest import free_port
from . import processes

MAX_BODY = 6291456
VARIANT = "primary-variant"


class Backend(processes.LoopbackServer):
    """A container stand-in: records each request; ``mode=`` in the custom attributes picks the answer."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        super().__init__(BackendHandler)


class BackendHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
        mode = dict(pair.split("=", 1) for pair in attributes.split(",") if "=" in pair).get("mode", "echo")
        if mode == "sleep":
            time.sleep(3)
        status, reply = {"400": (400, b"bad input"), "500": (500, b"x" * 5000),
                         "big": (200, b"0" * (MAX_BODY + 1))}.get(mode, (200, body))
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.test+json")
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("X-Amzn-SageMaker-Custom-Attributes", f"echo={attributes}")
        self.end_headers()
        self.wfile.write(reply)


def create_endpoint(emulator_url: str, name: str, variant: str = VARIANT) -> None:
    sagemaker = processes.client("sagemaker", emulator_url)
    sagemaker.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
                           PrimaryContainer={"Image": "dogops-serving:local"})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": variant, "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator with endpoint ``ep``; its log folder holds the gateways' logs too."""
    proc = processes.emulator(tmp_path_factory.mktemp("logs"))
    create_endpoint(proc.url, "ep")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def backend():
    server = Backend()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def gateway(emulator, backend):
    processes.route(emulator.url, "ep", backend.url)
    proc = processes.gateway(emulator.log.parent, emulator.url, DOGOPS_ENDPOINT_TIMEOUT=1)
    yield proc
    proc.stop()


@pytest.fixture
def runtime(gateway):
    """boto3's default client (legacy retries, 5 attempts): a retried error would reach the backend again."""
    return processes.client("sagemaker-runtime", gateway.url)


@contextlib.contextmanager
def reaching(backend, count: int):
    """Check that the block sends ``count`` requests to the container (a retry would send more)."""
    before = len(backend.requests)
    try:
        yield
    finally:
        assert len(backend.requests) - before == count


def model_error(runtime, backend, mode: str) -> dict:
    """Invoke with ``mode``, expect ``ModelError`` after one request to the container; return the error response."""
    with reaching(backend, 1), pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", CustomAttributes=f"mode={mode}")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    assert response["LogStreamArn"] == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep"
    return response


def test_success_passes_body_type_variant_and_custom_attributes(runtime, backend):
    out = runtime.invoke_endpoint(EndpointName="ep", Body=b'{"x": 1}', ContentType="application/json",
                                  Accept="application/vnd.test+json", CustomAttributes="trace=abc")
    assert out["Body"].read() == b'{"x": 1}'
    assert out["ContentType"] == "application/vnd.test+json"
    assert out["InvokedProductionVariant"] == VARIANT
    assert out["CustomAttributes"] == "echo=trace=abc"
    assert out["ResponseMetadata"]["RequestId"]
    headers, _ = backend.requests[-1]
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/vnd.test+json"


def test_only_invoke_endpoint_headers_reach_the_container(runtime, backend):
    runtime.meta.events.register("before-sign.sagemaker-runtime.InvokeEndpoint",
                                 lambda request, **_: request.headers.add_header("X-Amzn-Foo", "bar"))
    runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", InferenceId="inf-1")
    headers, _ = backend.requests[-1]
    assert headers["x-amzn-sagemaker-inference-id"] == "inf-1"
    assert "x-amzn-foo" not in headers and "authorization" not in headers and "x-amz-date" not in headers


def test_container_4xx_is_model_error_with_the_original_status(runtime, backend):
    response = model_error(runtime, backend, "400")
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 400
    assert response["OriginalMessage"] == "bad input"
    assert response["Error"]["Message"].startswith('Received client error (400) from primary with message "bad input"')


def test_container_5xx_is_model_error_with_a_capped_message(runtime, backend):
    response = model_error(runtime, backend, "500")
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == "x" * 2048
    assert response["Error"]["Message"].startswith("Received server error (500) from primary")


def test_slow_container_times_out_as_status_0(runtime, backend):
    response = model_error(runtime, backend, "sleep")
    assert response["OriginalStatusCode"] == 0
    assert "timed out while waiting for a response from container primary" in response["OriginalMessage"]


def test_oversized_answer_is_model_error(runtime, backend):
    assert model_error(runtime, backend, "big")["OriginalStatusCode"] == 200


def test_unknown_endpoint_is_validation_error_without_retries(runtime, backend):
    with reaching(backend, 0), pytest.raises(runtime.exceptions.ValidationError) as caught:
        runtime.invoke_endpoint(EndpointName="nope", Body=b"{}")
    assert caught.value.response["Error"]["Message"] == "Endpoint nope of account 123456789012 not found."
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_an_endpoint_no_server_hosts_is_not_in_service(emulator, runtime, backend):
    """No other model ever answers for it: the stack has no fallback server."""
    create_endpoint(emulator.url, "ep-unhosted")
    with reaching(backend, 0), pytest.raises(runtime.exceptions.ValidationError) as caught:
        runtime.invoke_endpoint(EndpointName="ep-unhosted", Body=b"{}")
    assert caught.value.response["Error"]["Message"] == ("Endpoint ep-unhosted of account 123456789012 is not in "
                                                         "service: no model server hosts it on this stack.")


def test_the_region_comes_from_the_signature(gateway, backend):
    other = processes.client("sagemaker-runtime", gateway.url, region="eu-west-1")
    with pytest.raises(other.exceptions.ValidationError):
        other.invoke_endpoint(EndpointName="ep", Body=b"{}")


def test_unknown_target_variant_is_validation_error(runtime):
    with pytest.raises(runtime.exceptions.ValidationError, match="Target variant"):
        runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetVariant="other")
    assert runtime.invoke_endpoint(EndpointName="ep", Body=b"{}",
                                   TargetVariant=VARIANT)["InvokedProductionVariant"] == VARIANT


def test_oversized_request_is_413_and_never_reaches_the_container(runtime, backend):
    from botocore.exceptions import ClientError

    with reaching(backend, 0), pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="ep", Body=b"0" * (MAX_BODY + 1))
    assert caught.value.response["Error"]["Code"] == "413"
    assert runtime.invoke_endpoint(EndpointName="ep", Body=b"0" * MAX_BODY)["Body"].read() == b"0" * MAX_BODY


def test_oversized_request_as_validation_error_when_configured(emulator, backend):
    processes.route(emulator.url, "ep", backend.url)
    proc = processes.gateway(emulator.log.parent, emulator.url, DOGOPS_OVERSIZE="validation")
    try:
        runtime = processes.client("sagemaker-runtime", proc.url)
        with pytest.raises(runtime.exceptions.ValidationError, match="has oversize body"):
            runtime.invoke_endpoint(EndpointName="ep", Body=b"0" * (MAX_BODY + 1))
    finally:
        proc.stop()


def test_unreachable_container_is_model_error_without_retries(emulator):
    create_endpoint(emulator.url, "ep-unreachable")
    processes.route(emulator.url, "ep-unreachable", f"http://127.0.0.1:{free_port()}")
    proc = processes.gateway(emulator.log.parent, emulator.url)
    try:
        runtime = processes.client("sagemaker-runtime", proc.url)
        with pytest.raises(runtime.exceptions.ModelError) as caught:
            runtime.invoke_endpoint(EndpointName="ep-unreachable", Body=b"{}")
        assert caught.value.response["OriginalStatusCode"] == 0
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    finally:
        proc.stop()


@pytest.mark.parametrize("status", ["Creating", "Failed", "OutOfService", "Deleting"])
def test_endpoints_that_do_not_serve_are_refused(status):
    with pytest.raises(EndpointUnavailable, match="not in service"):
        invoked_variant({"EndpointName": "ep", "EndpointStatus": status}, None)


def test_updating_endpoint_still_serves_and_defaults_to_all_traffic():
    assert invoked_variant({"EndpointName": "ep", "EndpointStatus": "Updating"}, None) == "AllTraffic"


def test_real_serve_behind_the_gateway(trained, tmp_path_factory, emulator, sample):
    """The trained model in the real ``serve``: top-5 through the gateway, and its 4xx as ModelError."""
    import shutil

    from ..serving.conftest import Server

    base = tmp_path_factory.mktemp("opt-ml")
    shutil.copytree(trained[0], base / "model")
    server = Server(base).wait_ready()
    create_endpoint(emulator.url, "ep-serve")
    processes.route(emulator.url, "ep-serve", server.url)
    proc = processes.gateway(emulator.log.parent, emulator.url)
    try:
        runtime = processes.client("sagemaker-runtime", proc.url)
        out = runtime.invoke_endpoint(EndpointName="ep-serve", Body=sample[0], ContentType="image/jpeg",
                                      Accept="application/vnd.dogops.topk+json", CustomAttributes="top_k=5")
        assert out["ContentType"] == "application/vnd.dogops.topk+json"
        predictions = json.loads(out["Body"].read())["predictions"]
        assert [p["rank"] for p in predictions] == [1, 2, 3, 4, 5]
        with pytest.raises(runtime.exceptions.ModelError) as caught:
            runtime.invoke_endpoint(EndpointName="ep-serve", Body=b"not an image", ContentType="image/jpeg")
        assert caught.value.response["OriginalStatusCode"] == 400
        assert "error" in json.loads(caught.value.response["OriginalMessage"])
    finally:
        proc.stop()
        server.stop()
