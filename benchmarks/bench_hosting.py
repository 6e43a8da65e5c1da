"""`make bench-hosting`: what native hosting costs: the time from CreateEndpoint to InService, and the memory of
N endpoints hosted at once (each a `serve` of its own, one worker).

A private emulator with DOGOPS_HOSTING=native on a free port; the model is a trained dogops model directory
(--model-dir; default: the native stack's, .dogops/stack/ml/model), packed as model.tar.gz and uploaded once per
endpoint. For N in --counts (default 1 2 4): N endpoints created at once, timed to InService, then the RSS and PSS
(proportional: shared pages split among the processes that share them) of all their servers' processes summed, read
from /proc; then they are deleted.

Usage: python benchmarks/bench_hosting.py [--model-dir DIR] [--counts 1 2 4]
"""

import argparse
import io
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3
import requests

from services.stack import settings

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::123456789012:role/sagemaker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hosted_processes(folder: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """The summed RSS and PSS of ``pids``, in KiB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model_dir, arcname=".")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / ".dogops" / "stack" / "ml" / "model")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    if not (args.model_dir / "manifest.json").exists():
        raise SystemExit(f"{args.model_dir} holds no trained model: run `dogops up` (or train) first")
    folder = Path(tempfile.mkdtemp(prefix="bench-hosting-"))
    port = free_port()
    env = {**os.environ, **settings.emulator_env(), "DOGOPS_HOSTING": "native", "DOGOPS_HOSTING_DIR": str(folder)}
    env.pop("SAGEMAKER_MODEL_SERVER_WORKERS", None)
    emulator = subprocess.Popen([sys.executable, "-m", "services.emulator", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/_dogops/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        make = {"endpoint_url": url, "region_name": settings.REGION, "aws_access_key_id": settings.ACCESS_KEY,
                "aws_secret_access_key": settings.root_secret()}
        s3, sagemaker = boto3.client("s3", **make), boto3.client("sagemaker", **make)
        s3.create_bucket(Bucket="bench")
        body = archive(args.model_dir)
        print(f"model: {args.model_dir} ({len(body) / 1e6:.1f} MB packed)")
        print(f"{'N':>3} {'to InService: first':>20} {'last':>6} {'RSS MiB':>9} {'PSS MiB':>9} {'PSS/endpoint':>13}")
        for count in args.counts:
            names = [f"bench-{count}-{i}" for i in range(count)]
            for name in names:
                s3.put_object(Bucket="bench", Key=f"{name}/model.tar.gz", Body=body)
                sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
                    "Image": "dogops-serving:dev", "ModelDataUrl": f"s3://bench/{name}/model.tar.gz"})
                sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
                    "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large"}])
            began = time.monotonic()
            for name in names:
                sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
            ready: dict[str, float] = {}
            while len(ready) < count:
                for name in set(names) - set(ready):
                    status = sagemaker.describe_endpoint(EndpointName=name)
                    if status["EndpointStatus"] == "Failed":
                        raise SystemExit(f"{name} failed: {status.get('FailureReason')}")
                    if status["EndpointStatus"] == "InService":
                        ready[name] = time.monotonic() - began
                time.sleep(0.2)
            rss, pss = memory_kib(hosted_processes(folder))
            print(f"{count:>3} {min(ready.values()):>19.1f}s {max(ready.values()):>5.1f}s {rss / 1024:>9.0f} "
                  f"{pss / 1024:>9.0f} {pss / 1024 / count:>13.0f}")
            for name in names:
                sagemaker.delete_endpoint(EndpointName=name)
            while hosted_processes(folder):
                time.sleep(0.2)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
