"""`make bench-lambda`: a Lambda function's cold start and warm invoke on the gateway.

Starts its own emulator and gateway on free loopback ports, deploys a function that
returns its event, then measures with boto3, one call at a time:
- cold: an invoke that starts a new worker (each after an UpdateFunctionConfiguration,
  which retires the warm ones), client-side, and the REPORT line's Init Duration;
- warm: an invoke answered by a warm worker;
- the gateway's health check, the HTTP round trip that both include.
Medians, and the ratios to the round trip.

Usage: python benchmarks/bench_lambda.py [--cold 10] [--warm 100]
"""

import argparse
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from dogops.lambda_package import build_zip
from services.stack import settings

ROOT = Path(__file__).resolve().parent.parent
HANDLER = b"def handler(event, context):\n    return event\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(module: str, log: Path, **env) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environ = {**os.environ, **settings.emulator_env(), **env}
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], cwd=ROOT, env=environ,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/_dogops/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{module} did not start: {log.read_text()}")


def client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name=settings.REGION, aws_access_key_id=settings.ACCESS_KEY,
                        aws_secret_access_key=settings.root_secret(), config=Config(retries={"max_attempts": 0}))


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--warm", type=int, default=100)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-lambda-"))
    emulator, emulator_url = start("services.emulator", logs / "emulator.log")
    gateway, gateway_url = start("services.gateway", logs / "gateway.log", DOGOPS_EMULATOR_URL=emulator_url,
                                 DOGOPS_LOG_DIR=str(logs))
    try:
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole"}]}
        role = client("iam", emulator_url).create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))
        control, lam = client("lambda", emulator_url), client("lambda", gateway_url)
        control.create_function(FunctionName="bench", Runtime="python3.11", Role=role["Role"]["Arn"],
                                Handler="app.handler", Code={"ZipFile": build_zip({"app.py": HANDLER})})
        payload = json.dumps({"n": 1})

        def invoke(**kw):
            out = lam.invoke(FunctionName="bench", Payload=payload, **kw)
            assert "FunctionError" not in out and json.loads(out["Payload"].read()) == {"n": 1}, out
            return out

        cold, inits = [], []
        for i in range(args.cold):
            control.update_function_configuration(FunctionName="bench", Environment={"Variables": {"RUN": str(i)}})
            time.sleep(1.2)  # the gateway reuses a configuration for 1 s
            seconds, out = timed(lambda: invoke(LogType="Tail"))
            cold.append(seconds)
            found = re.search(r"Init Duration: ([\d.]+) ms", base64.b64decode(out["LogResult"]).decode())
            if found:
                inits.append(float(found.group(1)) / 1000)
        invoke()
        warm = [timed(invoke)[0] for _ in range(args.warm)]
        health = requests.Session()
        trip = [timed(lambda: health.get(gateway_url + "/_dogops/health").raise_for_status())[0]
                for _ in range(args.warm)]
    finally:
        for proc in (gateway, emulator):
            proc.terminate()
            proc.wait(timeout=30)
    base = statistics.median(trip)
    rows = {"gateway round trip (/_dogops/health)": trip, "warm invoke": warm, "cold invoke (new worker)": cold}
    if inits:
        rows["  of which Init Duration (REPORT)"] = inits
    for name, values in rows.items():
        median = statistics.median(values)
        print(f"{name:<40} median {median * 1000:8.1f} ms   {median / base:6.1f}x round trip   (n={len(values)})")


if __name__ == "__main__":
    main()
