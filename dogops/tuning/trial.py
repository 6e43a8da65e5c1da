"""One trial: a training job run through the SageMaker contract, watched line by line.

Each trial gets its own ``/opt/ml`` tree (``input/config/*.json``, the
``training`` channel, ``model/``, ``output/``, ``checkpoints/``) and runs as the
``train`` console script (native) or as ``docker run IMAGE train`` (docker).
Its output is matched against the metric definitions as SageMaker does;
every objective emission is reported, and a report that says "stop" ends the
trial with SIGTERM, as SageMaker's early stopping does.
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from training.sagemaker_env import resource_config, write_job_config

RUNNING: set[subprocess.Popen] = set()  # live trial processes, for stop_all()
_RUNNING_LOCK = threading.Lock()
_STOPPED = threading.Event()


def stop_all() -> None:
    """SIGTERM every running trial, and any started from now on (each checkpoints and exits)."""
    with _RUNNING_LOCK:
        _STOPPED.set()
        for proc in RUNNING:
            proc.send_signal(signal.SIGTERM)


@dataclasses.dataclass
class TrialResult:
    """What a finished trial left behind."""

    status: str  # Completed | Failed | Stopped
    metrics: dict[str, float]
    objective: float | None
    failure_reason: str = ""
    seconds: float = 0.0


def prepare_job_dir(root: Path, data_dir: Path, hyperparameters: dict[str, str]) -> Path:
    """The ``/opt/ml`` tree of one trial, with the data as its ``training`` channel."""
    write_job_config(root, hyperparameters, {"training": {"TrainingInputMode": "File"}},
                     resource_config("algo-1", ["algo-1"], "local"))
    channel = root / "input" / "data" / "training"
    channel.parent.mkdir(parents=True, exist_ok=True)
    if not channel.exists():
        channel.symlink_to(Path(data_dir).resolve(), target_is_directory=True)
    for sub in ("model", "output", "checkpoints"):
        (root / sub).mkdir(exist_ok=True)
    return root


def command(root: Path, name: str, cache_dir: Path, image: str | None, data_dir: Path,
            threads: int) -> tuple[list[str], dict]:
    """The command and environment that run a trial natively or in a container."""
    if image is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
        env.update(SAGEMAKER_BASE_DIR=str(root), TRAINING_JOB_NAME=name, DOGOPS_CACHE_DIR=str(cache_dir),
                   OMP_NUM_THREADS=str(threads))
        return [str(Path(sys.executable).parent / "train")], env
    return ["docker", "run", "--rm", "--name", name, "-e", f"TRAINING_JOB_NAME={name}",
            "-e", f"OMP_NUM_THREADS={threads}",
            "-e", "DOGOPS_CACHE_DIR=/cache", "-v", f"{root.resolve()}:/opt/ml",
            "-v", f"{Path(data_dir).resolve()}:/opt/ml/input/data/training:ro",
            "-v", f"{Path(cache_dir).resolve()}:/cache", image, "train"], dict(os.environ)


def run_trial(root: Path, name: str, data_dir: Path, cache_dir: Path, definitions: list[dict], objective: str,
              report: Callable[[float, int], bool], image: str | None = None, threads: int = 0) -> TrialResult:
    """Run one trial to the end; ``report(value, step)`` returning True stops it early.

    ``threads`` caps the trial's torch threads (default: all cores), so parallel
    trials share the cores instead of oversubscribing them.
    """
    argv, env = command(root, name, cache_dir, image, data_dir, threads or os.cpu_count() or 1)
    patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
    metrics: dict[str, float] = {}
    steps = 0
    stopped = False
    started = time.monotonic()
    with open(root / "train.log", "w") as log, subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True) as proc:  # signals reach trials only through stop_all()
        with _RUNNING_LOCK:
            RUNNING.add(proc)
            if _STOPPED.is_set():  # the stop came while this trial was starting
                proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            log.write(line)
            for metric, pattern in patterns:
                match = pattern.search(line)
                if not match:
                    continue
                try:
                    metrics[metric] = float(match.group(1))
                except ValueError:
                    continue
                if metric == objective and not stopped:
                    steps += 1
                    if report(metrics[metric], steps):
                        stopped = True
                        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        with _RUNNING_LOCK:
            RUNNING.discard(proc)
    seconds = time.monotonic() - started
    value = metrics.get(objective)
    if stopped:
        return TrialResult("Stopped", metrics, value, "stopped early: worse than earlier trials", seconds)
    if code != 0:
        failure = root / "output" / "failure"
        reason = failure.read_text()[:1024] if failure.exists() else f"train exited with code {code}"
        return TrialResult("Failed", metrics, None, reason, seconds)
    if value is None:
        return TrialResult("Failed", metrics, None, f"no {objective} metric in the trial's output", seconds)
    return TrialResult("Completed", metrics, value, "", seconds)
