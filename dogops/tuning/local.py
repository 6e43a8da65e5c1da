"""A tuning job run locally: optuna searches, trials run through the SageMaker contract.

The job lives in one folder: ``study.journal`` (optuna's journal, so an
interrupted job resumes where it stopped: finished trials stay finished,
trials that were running are marked Failed and their slots run again),
``trials/<name>/`` (each trial's ``/opt/ml`` tree and log), ``cache/``
(the feature cache all trials share), and the results: ``results.csv``,
``results.json`` and ``objective.png``, rewritten as trials finish.
"""

import csv
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from .spec import TuningSpec, sampler_and_pruner
from .trial import TrialResult, prepare_job_dir, run_trial, warm_worker

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines report each trial
logging.getLogger("matplotlib").setLevel(logging.WARNING)

STATUS = {TrialState.COMPLETE: "Completed", TrialState.PRUNED: "Stopped", TrialState.FAIL: "Failed",
          TrialState.RUNNING: "InProgress", TrialState.WAITING: "Pending"}


class TrialFailed(Exception):
    """A trial ended without an objective value (recorded as Failed; the job goes on)."""


def _study(job_dir: Path, name: str, spec: TuningSpec) -> optuna.Study:
    sampler, pruner = sampler_and_pruner(spec)
    storage = JournalStorage(JournalFileBackend(str(job_dir / "study.journal")))
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=spec.direction, load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)  # left running by a job that was killed
        study.set_user_attr(f"interrupted_{trial.number}", True)
    return study


def _interrupted(study: optuna.Study) -> set[int]:
    return {int(k.split("_")[1]) for k in study.user_attrs if k.startswith("interrupted_")}


def _trials(study: optuna.Study, states=None) -> list[optuna.trial.FrozenTrial]:
    """The job's own trials (not those a warm start added)."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("warm_start")]


def warm_start(study: optuna.Study, spec: TuningSpec, earlier: Sequence[tuple[dict[str, str], float]]) -> int:
    """Add earlier tuning jobs' completed trials (their tuned hyperparameters and objective) to a new study, so the
    sampler starts from what they learned (SageMaker's warm start); those this search could not have drawn are
    left out. How many were added."""
    added = 0
    for hyperparameters, value in earlier:
        seen = [r.observed(hyperparameters[r.name]) if r.name in hyperparameters else None for r in spec.ranges]
        if all(seen):
            study.add_trial(optuna.trial.create_trial(
                params={name: v for name, _, v in seen}, distributions={name: d for name, d, _ in seen}, value=value,
                user_attrs={"warm_start": True}))
            added += 1
    return added


def results_rows(study: optuna.Study, spec: TuningSpec) -> list[dict]:
    """One row per trial: name, status, hyperparameters, objective, final metrics, failure reason."""
    rows, interrupted = [], _interrupted(study)
    for trial in _trials(study):
        status = "Interrupted" if trial.number in interrupted else STATUS[trial.state]
        row = {"trial": trial.user_attrs.get("name", f"trial-{trial.number:03d}"), "status": status,
               **{r.name: trial.user_attrs.get("hyperparameters", {}).get(r.name, "") for r in spec.ranges},
               spec.objective: trial.value if trial.state == TrialState.COMPLETE else "",
               "seconds": round(trial.user_attrs.get("seconds", 0.0), 1)}
        row.update({f"final_{k}": v for k, v in trial.user_attrs.get("metrics", {}).items() if k != spec.objective})
        row["failure_reason"] = trial.user_attrs.get("failure_reason", "")
        row["started"] = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else ""
        row["ended"] = trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else ""
        rows.append(row)
    return rows


def write_results(job_dir: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(job_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (job_dir / "results.json").write_text(json.dumps(rows, indent=2))


def plot_results(job_dir: Path, rows: list[dict], spec: TuningSpec) -> Path:
    """Objective against each tuned parameter, one panel each (completed trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "Completed"]
    fig, axes = plt.subplots(1, len(spec.ranges), figsize=(4.5 * len(spec.ranges), 3.8), squeeze=False)
    for ax, rng in zip(axes[0], spec.ranges):
        if rng.kind == "categorical":  # the spec's order on the axis, not the order trials drew
            xs = [rng.values.index(r[rng.name]) for r in done]
            ax.set_xticks(range(len(rng.values)), rng.values)
            ax.set_xlim(-0.5, len(rng.values) - 0.5)
        else:
            xs = [float(r[rng.name]) for r in done]
        ax.scatter(xs, [r[spec.objective] for r in done], color="tab:blue")
        if rng.scaling == "Logarithmic":
            ax.set_xscale("log")
        ax.set_xlabel(rng.name)
        ax.set_ylabel(spec.objective)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{job_dir.name}: {spec.objective} ({'lower' if spec.minimize else 'higher'} is better), "
                 f"{len(done)} completed trials")
    fig.tight_layout()
    path = job_dir / "objective.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# runner(trial name, hyperparameters, report(value, step) -> stop?, torch threads) -> the trial's result
TrialRunner = Callable[[str, dict[str, str], Callable[[float, int], bool], int], TrialResult]


def run_tuning_job(spec: TuningSpec, data_dir: Path | None, job_dir: Path, image: str | None = None,
                   stopping: threading.Event | None = None, runner: TrialRunner | None = None,
                   trial_name: Callable[[int], str] | None = None, warm: bool = True,
                   complete: Callable[[], bool] | None = None,
                   earlier: Sequence[tuple[dict[str, str], float]] = ()) -> optuna.Study:
    """Run (or resume) the tuning job in ``job_dir`` until ``MaxNumberOfTrainingJobs`` trials have ended.

    Setting ``stopping`` (the CLI does on SIGTERM/SIGINT, after signalling the trials)
    ends the job after the running trials; they are marked to run again on resume.
    ``runner`` runs each trial (default: ``train`` here, or ``image``, on ``data_dir``; the local stack's
    SageMaker runs each as a training job), named ``trial_name(number)`` (default ``<job>-<NNN>``).
    Native trials fork from a warm worker unless ``warm`` is false (then each starts a fresh ``train``).
    Once ``complete()`` says so after a trial, no new trial starts (a tuning job's completion criteria).
    ``earlier`` (hyperparameters, objective) warm-starts a new job's search (not Grid's: it has its combinations).
    """
    stopping = stopping or threading.Event()
    job_dir.mkdir(parents=True, exist_ok=True)
    name = job_dir.name
    study = _study(job_dir, name, spec)
    if earlier and spec.strategy != "Grid" and not study.get_trials(deepcopy=False):
        log.info("tuning job %s: warm start from %d earlier trials", name, warm_start(study, spec, earlier))
    offset = len(study.get_trials(deepcopy=False)) - len(_trials(study))  # warm-start trials come first
    interrupted = _interrupted(study)
    ended = [t for t in _trials(study, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
             if t.number not in interrupted]
    remaining = spec.max_jobs - len(ended)
    if ended or interrupted:
        log.info("resuming tuning job %s: %d trials ended, %d to run", name, len(ended), max(0, remaining))
    lock = threading.Lock()
    finished = [len(ended)]

    def objective(trial: optuna.Trial) -> float:
        hyperparameters = {**spec.static, **{r.name: r.suggest(trial) for r in spec.ranges},
                           "_tuning_objective_metric": spec.objective}
        this = (trial_name or (lambda number: f"{name}-{number:03d}"))(trial.number - offset)
        trial.set_user_attr("name", this)
        trial.set_user_attr("hyperparameters", hyperparameters)
        log.info("trial %s started (%s)", this, ", ".join(f"{r.name}={hyperparameters[r.name]}"
                                                          for r in spec.ranges))

        def report(value: float, step: int) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        result = (runner or local_trial)(this, hyperparameters, report, threads[0])
        if stopping.is_set():  # the job is being stopped: this trial runs again on resume
            study.set_user_attr(f"interrupted_{trial.number}", True)
            study.stop()
            raise TrialFailed("interrupted: the tuning job was stopped while this trial ran")
        trial.set_user_attr("metrics", result.metrics)
        trial.set_user_attr("seconds", result.seconds)
        trial.set_user_attr("failure_reason", result.failure_reason)
        with lock:
            finished[0] += 1
            tuned = ", ".join(f"{r.name}={hyperparameters[r.name]}" for r in spec.ranges)
            log.info("trial %d/%d %s (%s): %s%s", finished[0], spec.max_jobs, this, tuned, result.status,
                     f" {spec.objective}={result.objective:.6f}" if result.status == "Completed"
                     else f": {result.failure_reason.splitlines()[0] if result.failure_reason else ''}")
        if result.status == "Stopped":
            raise optuna.TrialPruned()
        if result.status == "Failed":
            raise TrialFailed(result.failure_reason)
        if stopping.is_set():
            study.stop()
        return result.objective

    def local_trial(this: str, hyperparameters: dict[str, str], report, threads: int) -> TrialResult:
        root = prepare_job_dir(job_dir / "trials" / this, data_dir, hyperparameters)
        return run_trial(root, this, data_dir, job_dir / "cache", spec.metric_definitions, spec.objective, report,
                         image, threads, worker)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with lock:
            write_results(job_dir, results_rows(study, spec))
        if complete is not None and complete():
            study.stop()

    cores = os.cpu_count() or 1
    threads = [cores]  # torch threads per trial: all cores alone, a share of them in parallel
    worker = warm_worker() if warm and runner is None and image is None and remaining > 0 else None
    try:
        if (remaining > 1 and spec.max_parallel > 1 and not ended and spec.static.get("feature_cache") != "false"
                and runner is None):
            # The first trial fills the shared feature cache alone; computing it twice at once gains nothing.
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=[after_trial])
            remaining -= 1
        threads[0] = max(1, cores // min(spec.max_parallel, max(remaining, 1)))
        if remaining > 0 and not stopping.is_set():
            study.optimize(objective, n_trials=remaining, n_jobs=spec.max_parallel, catch=(TrialFailed,),
                           callbacks=[after_trial])
    finally:
        if worker is not None:
            worker.close()
    rows = results_rows(study, spec)
    write_results(job_dir, rows)
    if any(r["status"] == "Completed" for r in rows):
        plot_results(job_dir, rows, spec)
    return study
