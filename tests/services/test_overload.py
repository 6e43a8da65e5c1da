"""Overload and hung peers, against the real emulator and gateway: a server past its admission bound answers the
called service's throttling error, which botocore classifies as throttling (so SDKs retry it), and keeps serving;
a gateway whose emulator hangs answers a bounded, clear error."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from services.stack import settings

from . import processes
from .test_sagemaker_runtime import Backend, create_endpoint

NO_RETRIES = {"retries": {"total_max_attempts": 1}}


def throttling(call) -> dict:
    """Make ``call`` (a boto3 call with retries off), expect an error botocore counts as throttling; its response."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    context = RetryContext(attempt_number=1, parsed_response=response)
    assert ThrottledRetryableChecker().is_retryable(context), response["Error"]
    return response


class Holder:
    """A real request that holds one admission slot of ``url``'s server: its headers sent, its body never, so the
    server's thread waits reading it until ``release``."""

    def __init__(self, url: str, path: str, service: str | None):
        host, port = url.rsplit("/", 1)[-1].split(":")
        self.sock = socket.create_connection((host, int(port)))
        scope = f"{settings.ACCESS_KEY}/20260101/{settings.REGION}/{service}/aws4_request"
        auth = "" if service is None else \
            f"Authorization: AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=00\r\n"
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100\r\n"
                          f"Content-Type: application/json\r\n{auth}\r\n".encode())

    def release(self) -> None:
        self.sock.close()


def until_throttled(call, timeout: float = 30) -> dict:
    """``throttling(call)``, once the server has taken up the holders (on a loaded machine, a moment after they
    connected): until then ``call`` gets through, and is made again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
        except ClientError as exc:
            if ThrottledRetryableChecker().is_retryable(RetryContext(attempt_number=1, parsed_response=exc.response)):
                return exc.response
        assert time.monotonic() < deadline, "the holders never filled the admission bound"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    proc = processes.emulator(tmp_path_factory.mktemp("logs"), DOGOPS_EMULATOR_MAX_REQUESTS=1)
    yield proc
    proc.stop()


def test_an_overloaded_emulator_throttles_in_each_protocol_then_serves(emulator):
    holders = [Holder(emulator.url, "/", "s3")]
    try:
        until_throttled(processes.client("sts", emulator.url, **NO_RETRIES).get_caller_identity)
        clients = {name: processes.client(name, emulator.url, **NO_RETRIES)
                   for name in ("s3", "sts", "sagemaker", "lambda", "ec2")}
        expected = {"s3": ("SlowDown", 503, clients["s3"].list_buckets),
                    "sts": ("Throttling", 400, clients["sts"].get_caller_identity),  # query protocol
                    "sagemaker": ("ThrottlingException", 400, clients["sagemaker"].list_endpoints),  # JSON
                    "lambda": ("TooManyRequestsException", 429, clients["lambda"].list_functions),  # rest-json
                    "ec2": ("RequestLimitExceeded", 503, clients["ec2"].describe_instances)}
        for name, (code, status, call) in expected.items():
            response = throttling(call)
            assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), name
    finally:
        for holder in holders:
            holder.release()
    time.sleep(0.5)
    assert processes.client("sts", emulator.url).get_caller_identity()["Account"] == settings.ACCOUNT


def test_an_overloaded_gateway_throttles_invocations_and_keeps_serving(emulator, tmp_path):
    create_endpoint(emulator.url, "ep")
    backend = Backend()
    processes.route(emulator.url, "ep", backend.url)
    gateway = processes.gateway(tmp_path, emulator.url, DOGOPS_GATEWAY_MAX_REQUESTS=2,
                                DOGOPS_GATEWAY_MAX_INVOCATIONS=1, DOGOPS_EMULATOR_MAX_REQUESTS=64)
    try:
        runtime = processes.client("sagemaker-runtime", gateway.url, **NO_RETRIES)

        def invoke(_):  # the backend sleeps 3 s on mode=sleep: 8 at once against a bound of 2
            try:
                return runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", CustomAttributes="mode=sleep")["Body"].read()
            except ClientError as exc:
                return exc.response

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(invoke, range(8)))
        served = [a for a in answers if a == b"{}"]
        refused = [a for a in answers if a != b"{}"]
        assert served and refused, answers
        for response in refused:
            assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == \
                ("ThrottlingException", 429)
            assert ThrottledRetryableChecker().is_retryable(RetryContext(attempt_number=1, parsed_response=response))
        holder = Holder(gateway.url, "/predict", None)  # an invocation, read slowly
        try:
            lam = processes.client("lambda", gateway.url, **NO_RETRIES)
            response = until_throttled(lambda: lam.invoke(FunctionName="f", Payload=b"{}"))
            assert response["Error"]["Code"] == "TooManyRequestsException"
            assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        finally:
            holder.release()
        assert runtime.invoke_endpoint(EndpointName="ep", Body=b"[1]")["Body"].read() == b"[1]"  # serving after
    finally:
        gateway.stop()
        backend.shutdown()


def test_a_hung_emulator_gives_a_clear_error_within_the_gateways_timeout(tmp_path):
    hung = socket.socket()  # listens, never answers: connections wait in its backlog
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    gateway = processes.gateway(tmp_path, f"http://127.0.0.1:{hung.getsockname()[1]}", DOGOPS_EMULATOR_TIMEOUT=1)
    try:
        runtime = processes.client("sagemaker-runtime", gateway.url, **NO_RETRIES)
        started = time.monotonic()
        with pytest.raises(ClientError) as caught:
            runtime.invoke_endpoint(EndpointName="ep", Body=b"{}")
        elapsed = time.monotonic() - started
        error = caught.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "timed out" in error["Error"]["Message"].lower() or "Timeout" in error["Error"]["Message"], error
        assert elapsed < 30, elapsed  # bounded by DOGOPS_EMULATOR_TIMEOUT=1, not the 60 s of a default client
    finally:
        gateway.stop()
        hung.close()


def test_every_admission_slot_comes_back():
    """Answers that raise or are closed early give their slot back (a leak would throttle a server for good)."""
    from services.security.admission import Admission

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/raise":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"ok"]

    admission = Admission(app, {"requests": 1}, lambda environ: "requests")
    for path in ("/raise", "/ok", "/raise", "/ok"):
        try:
            body = admission({"PATH_INFO": path}, lambda *a: None)
            body.close()
        except RuntimeError:
            pass
    assert admission.slots["requests"].acquire(blocking=False)
    assert admission.throttles == {"requests": 0}
