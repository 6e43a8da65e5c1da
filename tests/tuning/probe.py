"""A stand-in for ``train`` in the warm-trial tests: it prints what its process looks like (argv, environment,
working directory, ``sys.path``, session, stdin, torch threads, parent), then emits ``test_loss`` lines as its
hyperparameters say (``steps``, one every 50 ms; ``crash`` raises), with SIGTERM handled as ``train`` does."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch


def _stop(signum, frame):
    print("received SIGTERM", flush=True)
    sys.exit(143)


def main() -> int:
    base = Path(os.environ["SAGEMAKER_BASE_DIR"])
    hyperparameters = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    stdin = os.fstat(0)
    print(json.dumps({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "path": sys.path,
                      "hyperparameters": hyperparameters, "session_leader": os.getsid(0) == os.getpid(),
                      "stdin": [stdin.st_dev, stdin.st_ino], "torch_threads": torch.get_num_threads(),
                      "parent": os.getppid()}), flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if hyperparameters.get("crash"):
        raise RuntimeError("the probe crashed")
    signal.signal(signal.SIGTERM, _stop)
    for step in range(int(hyperparameters.get("steps", "1"))):
        print(f"step={step} test_loss={1 / (step + 1):.6f}", flush=True)
        time.sleep(0.05)
    return 0


def compute(env: dict) -> None:
    """A preload hook that wrongly runs torch computation: OpenMP starts its threads in the worker."""
    torch.ones(1 << 22).mul(2).sum()
