"""Warm trials: a trial forked by the warm worker runs under the same contract as a fresh ``train``."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dogops.tuning import trial
from dogops.tuning.warm import ForkServer

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = [{"Name": "test_loss", "Regex": r"\btest_loss=([0-9.]+)"}]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """The probe as a console script, as pip writes one."""
    script = tmp_path_factory.mktemp("bin") / "probe"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom tests.tuning.probe import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def probe_trials(probe, monkeypatch):
    """Native trials run the probe (importable by a fresh process too) instead of ``train``."""
    monkeypatch.setattr(trial, "TRAIN", probe)
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def _probe_worker(probe: Path, preload: str = "") -> ForkServer:
    return ForkServer(probe, "tests.tuning.probe:main", preload, {**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def worker(probe):
    """One warm worker serving the probe for this module's tests."""
    server = _probe_worker(probe)
    yield server
    server.close()


def _job(tmp_path: Path, name: str, **hyperparameters) -> Path:
    return trial.prepare_job_dir(tmp_path / name, tmp_path, {k: str(v) for k, v in hyperparameters.items()})


def _run(root: Path, worker=None, report=lambda value, step: False) -> trial.TrialResult:
    return trial.run_trial(root, root.name, root, root / "cache", DEFINITIONS, "test_loss", report, threads=1,
                           warm=worker)


def _seen(root: Path) -> dict:
    """What the probe printed about its process (the first line of the trial's log)."""
    return json.loads((root / "train.log").read_text().splitlines()[0])


def test_a_warm_trial_gets_the_argv_environment_and_job_directory_of_a_cold_one(tmp_path, probe_trials, worker):
    root = _job(tmp_path, "same", steps=3)
    cold = _run(root)
    cold_seen, cold_log = _seen(root), (root / "train.log").read_text()
    warm = _run(root, worker)
    warm_seen, warm_log = _seen(root), (root / "train.log").read_text()
    assert cold.status == warm.status == "Completed" and cold.metrics == warm.metrics == {"test_loss": 0.333333}
    assert cold_seen.pop("parent") == os.getpid() and warm_seen.pop("parent") == worker.pid
    assert warm_seen == cold_seen
    assert warm_seen["argv"] == [str(trial.TRAIN)] and warm_seen["cwd"] == os.getcwd()
    assert warm_seen["env"]["SAGEMAKER_BASE_DIR"] == str(root) and warm_seen["env"]["OMP_NUM_THREADS"] == "1"
    assert warm_seen["torch_threads"] == 1 and warm_seen["session_leader"]
    assert warm_seen["hyperparameters"] == {"steps": "3"}
    assert warm_log.splitlines()[1:] == cold_log.splitlines()[1:]  # stderr in the log, in order


def test_stopping_a_trial_ends_it_alone(tmp_path, probe_trials, worker):
    slow, quick = _job(tmp_path, "slow", steps=400), _job(tmp_path, "quick", steps=30)
    results = {}
    runs = [threading.Thread(target=lambda: results.update(slow=_run(slow, worker, lambda value, step: True))),
            threading.Thread(target=lambda: results.update(quick=_run(quick, worker)))]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert results["slow"].status == "Stopped" and results["slow"].seconds < 10
    assert "received SIGTERM" in (slow / "train.log").read_text()
    assert results["quick"].status == "Completed" and results["quick"].objective == pytest.approx(1 / 30, abs=1e-6)

    killed, going = _job(tmp_path, "killed", steps=400), _job(tmp_path, "going", steps=10)
    first = trial.start(*trial.command(killed, "killed", tmp_path, None, tmp_path, 1), worker)
    second = trial.start(*trial.command(going, "going", tmp_path, None, tmp_path, 1), worker)
    with pytest.raises(subprocess.TimeoutExpired):
        first.wait(timeout=0.2)
    first.kill()
    assert first.wait(timeout=30) == -signal.SIGKILL
    first.send_signal(signal.SIGTERM)  # after its end: nothing to signal, nothing else hit
    assert second.stdout.read().count("test_loss=") == 10 and second.wait(timeout=30) == 0
    for proc in (first, second):
        proc.stdout.close()


def test_a_crashing_trial_fails_with_its_error(tmp_path, probe_trials, worker):
    root = _job(tmp_path, "crash", crash="yes")
    result = _run(root, worker)
    assert result.status == "Failed" and result.failure_reason == "train exited with code 1"
    assert (root / "train.log").read_text().splitlines()[-1] == "RuntimeError: the probe crashed"


def test_a_real_trial_crashing_in_the_warm_worker_fails_with_its_reason(tmp_path, data_dir, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # resnet18's weights cannot be had here
    server = trial.warm_worker()
    try:
        root = trial.prepare_job_dir(tmp_path / "resnet", data_dir, {"backbone": "resnet18", "image_size": "64"})
        result = _run(root, server)
    finally:
        server.close()
    assert result.status == "Failed" and result.failure_reason.startswith("WeightsUnavailable: "), result
    assert "training failed: WeightsUnavailable" in (root / "train.log").read_text()
    assert "warm trials unavailable" not in caplog.text


def test_a_worker_that_ran_torch_computation_is_not_forked(tmp_path, probe, probe_trials, caplog):
    server = _probe_worker(probe, "tests.tuning.probe:compute")
    try:
        with caplog.at_level(logging.WARNING):
            result = _run(_job(tmp_path, "unsafe", steps=2), server)
    finally:
        server.close()
    assert result.status == "Completed"
    assert _seen(tmp_path / "unsafe")["parent"] == os.getpid()  # started cold instead
    assert "forking it is unsafe" in caplog.text


def test_closing_the_worker_stops_its_trials(tmp_path, probe_trials, probe):
    server = _probe_worker(probe)
    root = _job(tmp_path, "left", steps=400)
    proc = trial.start(*trial.command(root, "left", tmp_path, None, tmp_path, 1), server)
    assert "test_loss=" not in proc.stdout.readline() + proc.stdout.readline()  # what it saw, its stderr line
    assert "test_loss=" in proc.stdout.readline()  # running
    server.close()
    assert proc.stdout.read().strip().endswith("received SIGTERM") and proc.wait(timeout=10) == 143
    proc.stdout.close()
