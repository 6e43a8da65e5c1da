"""One trial: a training job run through the SageMaker contract, watched line by line.

Each trial gets its own ``/opt/ml`` tree (``input/config/*.json``, the
``training`` channel, ``model/``, ``output/``, ``checkpoints/``) and runs as the
``train`` console script (native) or as ``docker run IMAGE train`` (docker).
A native trial's process is forked by the job's warm worker (``warm``: torch
already imported, the cached features already loaded) when there is one, else
started fresh; either way with the same argv, environment and job directory.
Its output is matched against the metric definitions as SageMaker does;
every objective emission is reported, and a report that says "stop" ends the
trial with SIGTERM, as SageMaker's early stopping does.
"""

import dataclasses
import importlib.metadata
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from training.metrics import MetricReader
from training.sagemaker_env import resource_config, write_job_config

from .warm import ForkServer, WarmProcess, WarmUnavailable

TRAIN = Path(sys.executable).parent / "train"  # the console script a native trial runs
RUNNING: set[subprocess.Popen | WarmProcess] = set()  # live trial processes, for stop_all()
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


def _native_env() -> dict[str, str]:
    """Our environment less the training contract's variables, which each trial sets for itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}


def warm_worker() -> ForkServer | None:
    """A warm worker for native trials, or None where there cannot be one: forking it needs Linux, and
    ``train`` must be this environment's dogops console script. Its entry (``training.entry``) runs a named
    user script or dogops' training; a trial never names a script, so the worker runs dogops' training,
    ``training.train:main``, directly: torch is imported before the worker counts its threads."""
    scripts = [s for s in importlib.metadata.entry_points(group="console_scripts", name=TRAIN.name)
               if s.dist is not None and s.dist.name == "dogops"]  # not the training toolkit's own `train`
    if sys.platform != "linux" or not scripts or not TRAIN.exists():
        return None
    return ForkServer(TRAIN, "training.train:main", "training.train:warm", _native_env())


def command(root: Path, name: str, cache_dir: Path, image: str | None, data_dir: Path,
            threads: int) -> tuple[list[str], dict]:
    """The command and environment that run a trial natively or in a container."""
    if image is None:
        env = _native_env()
        env.update(SAGEMAKER_BASE_DIR=str(root), TRAINING_JOB_NAME=name, DOGOPS_CACHE_DIR=str(cache_dir),
                   OMP_NUM_THREADS=str(threads))
        return [str(TRAIN)], env
    return ["docker", "run", "--rm", "--name", name, "-e", f"TRAINING_JOB_NAME={name}",
            "-e", f"OMP_NUM_THREADS={threads}",
            "-e", "DOGOPS_CACHE_DIR=/cache", "-v", f"{root.resolve()}:/opt/ml",
            "-v", f"{Path(data_dir).resolve()}:/opt/ml/input/data/training:ro",
            "-v", f"{Path(cache_dir).resolve()}:/cache", image, "train"], dict(os.environ)


def start(argv: list[str], env: dict[str, str], warm: ForkServer | None = None) -> subprocess.Popen | WarmProcess:
    """A trial's process, its output (stdout and stderr) on ``.stdout``: forked by ``warm`` when that serves
    ``argv``, else (a container, no worker, or one that cannot fork safely any more) a fresh process."""
    if warm is not None and warm.serves(argv):
        try:
            return warm.start(argv, env)
        except WarmUnavailable:  # the worker has said why, once
            pass
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # signals reach trials only through stop_all()


def run_trial(root: Path, name: str, data_dir: Path, cache_dir: Path, definitions: list[dict], objective: str,
              report: Callable[[float, int], bool], image: str | None = None, threads: int = 0,
              warm: ForkServer | None = None) -> TrialResult:
    """Run one trial to the end; ``report(value, step)`` returning True stops it early.

    ``threads`` caps the trial's torch threads (default: all cores), so parallel
    trials share the cores instead of oversubscribing them. ``warm`` forks native trials.
    """
    argv, env = command(root, name, cache_dir, image, data_dir, threads or os.cpu_count() or 1)
    reader = MetricReader(definitions)
    metrics: dict[str, float] = {}
    steps = 0
    stopped = False
    started = time.monotonic()
    with open(root / "train.log", "w") as log, start(argv, env, warm) as proc:
        with _RUNNING_LOCK:
            RUNNING.add(proc)
            if _STOPPED.is_set():  # the stop came while this trial was starting
                proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            log.write(line)
            found = reader.read(line)
            metrics.update(found)
            if objective in found and not stopped:
                steps += 1
                if report(found[objective], steps):
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
