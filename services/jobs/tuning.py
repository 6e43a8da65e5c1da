"""The local stack's SageMaker tuning: a created hyperparameter tuning job run by the local tuner.

``services.emulator.sagemaker_tuning`` starts :func:`start` in a thread of the emulator for each ``CreateHyperParameterTuningJob``
(where the emulator leaves jobs to the host, ``dogops promote tune`` claims it and runs it there:
:func:`run_on_host`). The job's description gives the tuner one spec per training job definition
(``services.jobs.tuning_request``: ``TrainingJobDefinition`` or ``TrainingJobDefinitions``, in the vocabulary of
``dogops.tuning.spec``). ``dogops.tuning.local.run_tuning_job`` searches each as it does locally (the strategy's
optuna sampler, early stopping's pruner, ``MaxParallelTrainingJobs`` at once), and each trial is a training job
created on the emulator from its definition: the static hyperparameters as sent (the SDK's ``sagemaker_*`` keys
too) and the sampled ones with ``_tuning_objective_metric``, the definition's ``ResourceConfig`` (or one from its
``HyperParameterTuningResourceConfig``), named ``<tuning job>-<NNN>-<8 hex>`` as SageMaker names them, with the
tuning job's ``TuningJobArn``, its checkpoints under ``<CheckpointConfig.S3Uri>/<trial>``; the training runner
(``services.jobs.training``) runs it and reads the objective from its log with the definition's
``MetricDefinitions``. The objective, each time a trial logs it, feeds early stopping: a pruned trial is
stopped (``StopTrainingJob``). The tuning job's counters, trials (with ``TunedHyperParameters``, the
objective, the definition's name) and ``BestTrainingJob`` follow the trials; no new trial starts once the
job's ``TuningJobCompletionCriteria`` are met; a ``WarmStartConfig``'s parents' completed trials seed the search;
the results (``results.csv``, ``results.json``, ``objective.png``) land in ``DOGOPS_TUNING_DIR/<job>``
(``/<definition>`` for each of several; default ``<tmp>/dogops-tuning``).
"""

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from dogops.tuning.local import run_tuning_job
from dogops.tuning.trial import TrialResult

from . import training
from .tuning_request import Definition, read

log = logging.getLogger(__name__)

KIND = "HyperParameterTuningJob"
ENDED = ("Completed", "Failed", "Stopped")
POLL_S = 1.0
COPIED = ("AlgorithmSpecification", "RoleArn", "InputDataConfig", "VpcConfig", "OutputDataConfig",
          "StoppingCondition", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
          "EnableManagedSpotTraining", "RetryStrategy", "Environment")


def tuning_dir() -> Path:
    return Path(os.environ.get("DOGOPS_TUNING_DIR") or Path(tempfile.gettempdir()) / "dogops-tuning")


def start(name: str, region: str, emulator_url: str, report: training.Report, report_trial: Callable[..., None]) -> None:
    """Run tuning job ``name`` in a thread of the emulator, reporting on it and on its trials (``report_trial(
    trial, **fields)``) through the emulator's callbacks."""
    run = TuningRun(name, training._session(region), emulator_url, report, report_trial)
    threading.Thread(target=run.main, name=f"tuning-job-{name}", daemon=True).start()


def run_on_host(session, name: str) -> threading.Thread | None:
    """Claim tuning job ``name`` where the emulator leaves jobs to the host, and run it here (its trials too, in
    docker mode); the thread, or None when the emulator runs it itself."""
    if not training.claim(session, KIND, name):
        return None
    sm = session.client("sagemaker")
    run = TuningRun(name, training._session(sm.meta.region_name), sm.meta.endpoint_url,
                    training.remote_report(session, KIND, name),
                    lambda trial, **f: training.remote_report(session, "TrainingJob", trial)(**f), host=session)
    thread = threading.Thread(target=run.main, name=f"tuning-job-{name}", daemon=True)
    thread.start()
    return thread


class TuningRun:
    """One tuning job from its description to its end."""

    def __init__(self, name: str, session, url: str, report, report_trial, host=None):
        self.name, self.report, self.report_trial, self.host = name, report, report_trial, host
        self.sm = session.client("sagemaker", endpoint_url=url)
        self.trials: dict[str, dict] = {}  # name -> HyperParameterTrainingJobSummary
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def main(self) -> None:
        started, fields = time.monotonic(), {}
        try:
            self.job = self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name)
            self.definitions, self.completion = read(self.job, check_names=True)
            self.minimize = self.completion.minimize
            folder = tuning_dir() / self.name
            shutil.rmtree(folder, ignore_errors=True)  # an earlier emulator's job of that name: not this one
            first = 1  # trials are numbered across definitions, as SageMaker numbers them
            for definition in self.definitions:
                if self.stopping.is_set() or self.completion.reached:
                    break
                run_tuning_job(definition.spec, None, folder / definition.name if definition.name else folder,
                               stopping=self.stopping, runner=partial(self.trial, definition),
                               trial_name=lambda number, first=first:
                               f"{self.name}-{first + number:03d}-{uuid.uuid4().hex[:8]}",
                               complete=lambda: self.completion.reached, earlier=self._earlier(definition))
                first += definition.spec.max_jobs
            fields["tuning_job_completion_details"] = {
                "NumberOfTrainingJobsObjectiveNotImproving": self.completion.not_improving}
            log.info("tuning job %s: results in %s", self.name, folder)
            completed = any(t["TrainingJobStatus"] == "Completed" for t in self.trials.values())
            status = "Stopped" if self.stopping.is_set() else "Completed" if completed else "Failed"
            if status == "Failed":
                fields["failure_reason"] = "No training job completed with an objective metric value"
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is the job's failure reason
            log.exception("tuning job %s failed", self.name)
            status, fields["failure_reason"] = "Failed", f"{type(exc).__name__}: {exc}"[:1024]
        self.report(status, hyper_parameter_tuning_end_time=datetime.now(timezone.utc),
                    consumed_resources={"RuntimeInSeconds": int(time.monotonic() - started)}, **self._state(),
                    **fields)

    def _earlier(self, definition: Definition) -> list[tuple[dict[str, str], float]]:
        """The completed trials of the job's WarmStartConfig parents with this definition's objective (and name,
        where both have one): their tuned hyperparameters and objective values."""
        found = []
        for parent in self.job.get("WarmStartConfig", {}).get("ParentHyperParameterTuningJobs", []):
            pages = self.sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
                HyperParameterTuningJobName=parent["HyperParameterTuningJobName"], StatusEquals="Completed")
            for trial in (t for page in pages for t in page["TrainingJobSummaries"]):
                objective = trial.get("FinalHyperParameterTuningJobObjectiveMetric", {})
                named = trial.get("TrainingJobDefinitionName")
                if objective.get("MetricName") == definition.spec.objective and (
                        named is None or definition.name is None or named == definition.name):
                    found.append((trial["TunedHyperParameters"], objective["Value"]))
        return found

    def _state(self) -> dict:
        """Counters, trials and the best trial, as ``DescribeHyperParameterTuningJob`` has them."""
        with self.lock:
            trials = [dict(t) for t in self.trials.values()]
        statuses = [t["TrainingJobStatus"] for t in trials]
        failed = [t for t in trials if t["TrainingJobStatus"] == "Failed"]
        objectives = [t["ObjectiveStatus"] for t in trials]
        done = [t for t in trials if t["TrainingJobStatus"] == "Completed" and t["ObjectiveStatus"] == "Succeeded"]
        value = (lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        best = (min if self.minimize else max)(done, key=value) if done else None
        return {"trials": trials, "best_training_job": best,
                "training_job_status_counters": {"Completed": statuses.count("Completed"),
                                                 "InProgress": statuses.count("InProgress") + statuses.count(
                                                     "Stopping"), "RetryableError": 0,
                                                 "NonRetryableError": len(failed), "Stopped": statuses.count("Stopped")},
                "objective_status_counters": {k: objectives.count(k) for k in ("Succeeded", "Pending", "Failed")}}

    def _summarize(self, job: dict, tuned: dict, definition: Definition) -> None:
        spec = definition.spec
        metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
        status = job["TrainingJobStatus"]
        objective = "Pending" if status in ("InProgress", "Stopping") else (
            "Succeeded" if spec.objective in metrics else "Failed")
        summary = {"TrainingJobName": job["TrainingJobName"], "TrainingJobArn": job["TrainingJobArn"],
                   "TuningJobName": self.name, "CreationTime": job["CreationTime"], "TrainingJobStatus": status,
                   "TunedHyperParameters": tuned, "ObjectiveStatus": objective}
        if definition.name:
            summary["TrainingJobDefinitionName"] = definition.name
        for key in ("TrainingStartTime", "TrainingEndTime", "FailureReason"):
            if job.get(key):
                summary[key] = job[key]
        if spec.objective in metrics:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": "Minimize" if spec.minimize else "Maximize", "MetricName": spec.objective,
                "Value": metrics[spec.objective]}
        with self.lock:
            changed = self.trials.get(job["TrainingJobName"]) != summary
            self.trials[job["TrainingJobName"]] = summary
        if changed:
            self.report(**self._state())

    def _request(self, name: str, hyperparameters: dict[str, str], definition: Definition) -> dict:
        request = {"TrainingJobName": name, "HyperParameters": hyperparameters, "ResourceConfig": definition.resources,
                   **{k: definition.body[k] for k in COPIED if k in definition.body}}
        if definition.body.get("CheckpointConfig"):
            checkpoint = definition.body["CheckpointConfig"]
            request["CheckpointConfig"] = {**checkpoint, "S3Uri": f"{checkpoint['S3Uri'].rstrip('/')}/{name}"}
        tags = self.sm.list_tags(ResourceArn=self.job["HyperParameterTuningJobArn"]).get("Tags")
        if tags:
            request["Tags"] = tags
        return request

    def trial(self, definition: Definition, name: str, hyperparameters: dict[str, str], report,
              threads: int) -> TrialResult:
        """Run one trial of ``definition`` as a training job to its end (the local tuner's runner)."""
        spec = definition.spec
        tuned = {r.name: hyperparameters[r.name] for r in spec.ranges}
        steps, pruned = [0], threading.Event()

        def observe(metric: str, value: float) -> None:
            if metric == spec.objective and not pruned.is_set():
                steps[0] += 1
                if report(value, steps[0]):
                    pruned.set()

        training.observe(name, observe)
        try:
            self.sm.create_training_job(**self._request(name, hyperparameters, definition))
            if self.host is not None:
                training.run_on_host(self.host, name)
            self.report_trial(name, tuning_job_arn=self.job["HyperParameterTuningJobArn"])
            job = self._wait(name, tuned, definition, pruned)
        finally:
            training.observe(name, None)
        metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
        value, seconds = metrics.get(spec.objective), float(job.get("TrainingTimeInSeconds", 0))
        if job["TrainingJobStatus"] == "Stopped":
            return TrialResult("Stopped", metrics, value, "stopped early: worse than earlier trials"
                               if pruned.is_set() else "the tuning job was stopped", seconds)
        if job["TrainingJobStatus"] == "Failed" or value is None:
            reason = job.get("FailureReason") or f"no {spec.objective} metric in the training job's log"
            return TrialResult("Failed", metrics, None, reason, seconds)
        with self.lock:
            self.completion.record(value)
        return TrialResult("Completed", metrics, value, "", seconds)

    def _wait(self, name: str, tuned: dict, definition: Definition, pruned: threading.Event) -> dict:
        stop_sent = False
        while True:
            job = self.sm.describe_training_job(TrainingJobName=name)
            self._summarize(job, tuned, definition)
            if job["TrainingJobStatus"] in ENDED:
                return job
            status = self.sm.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=self.name)["HyperParameterTuningJobStatus"]
            if status == "Stopping":
                self.stopping.set()
            if not stop_sent and job["TrainingJobStatus"] == "InProgress" and (pruned.is_set()
                                                                               or self.stopping.is_set()):
                self.sm.stop_training_job(TrainingJobName=name)
                stop_sent = True
            time.sleep(POLL_S)
