"""`make bench-stack`: the local stack's cold start, and what the Lambda -> gateway -> endpoint chain costs.

Against the native stack on this machine:
- cold start: `dogops down`, then `dogops up` until the first prediction answers
  (data already generated and the model already trained are reused, as in the
  inner loop; pass --retrain to include training);
- overhead: the same photo, by URL from the gateway's samples, sent N times
  (interleaved, one at a time) directly to the serving container's
  /invocations, to SageMaker Runtime InvokeEndpoint through the gateway, and to
  the Lambda function (which calls InvokeEndpoint); medians and their ratios.

Usage: python benchmarks/bench_stack.py [--requests 30] [--retrain]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from services.stack import settings
from services.stack.supervisor import endpoint_url

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def cold_start(retrain: bool) -> float:
    subprocess.run([str(BIN / "dogops"), "down"], cwd=ROOT, check=True)
    started = time.perf_counter()
    subprocess.run([str(BIN / "dogops"), "up", *(["--retrain"] if retrain else [])], cwd=ROOT, check=True)
    first_prediction(settings.gateway_url() + "/samples/dog.jpg")
    return time.perf_counter() - started


def first_prediction(url: str) -> None:
    response = requests.post(settings.gateway_url() + "/predict", json={"url": url}, timeout=120)
    response.raise_for_status()


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()

    seconds = cold_start(args.retrain)
    print(f"cold start (dogops up -> first prediction): {seconds:.1f} s")

    body = json.dumps({"url": settings.gateway_url() + "/samples/dog.jpg"}).encode()
    direct, served_at = requests.Session(), endpoint_url()  # the endpoint's serve, from the emulator's routes
    credentials = {"aws_access_key_id": settings.ACCESS_KEY, "aws_secret_access_key": settings.root_secret(),
                   "region_name": settings.REGION, "config": Config(retries={"max_attempts": 0})}
    runtime = boto3.client("sagemaker-runtime", endpoint_url=settings.gateway_url(), **credentials)
    function = boto3.client("lambda", endpoint_url=settings.gateway_url(), **credentials)

    def call_direct():
        direct.post(served_at + "/invocations", data=body, timeout=70,
                    headers={"Content-Type": "application/json"}).raise_for_status()

    def call_runtime():
        runtime.invoke_endpoint(EndpointName=settings.ENDPOINT_NAME, Body=body, ContentType="application/json")

    def call_lambda():
        response = function.invoke(FunctionName=settings.FUNCTION_NAME, Payload=body)
        assert "FunctionError" not in response and json.loads(response["Payload"].read())["statusCode"] == 200

    paths = {"direct /invocations": call_direct, "InvokeEndpoint via gateway": call_runtime,
             "Lambda -> gateway -> endpoint": call_lambda}
    for call in paths.values():  # warm: connections, the function's worker
        call()
    times = {name: [] for name in paths}
    for _ in range(args.requests):
        for name, call in paths.items():
            times[name].append(timed(call))
    base = statistics.median(times["direct /invocations"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<32} median {median * 1000:7.1f} ms   {median / base:5.2f}x direct")


if __name__ == "__main__":
    main()
