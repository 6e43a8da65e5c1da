"""SageMaker hyperparameter tuning jobs on moto's server that really run (imported by ``services.emulator.server``).

moto 5 marks a tuning job ``Completed`` the moment it is created, with a made-up ``BestTrainingJob``, and has
neither ``ListTrainingJobsForHyperParameterTuningJob`` nor ``StopHyperParameterTuningJob``. Here:

- ``CreateHyperParameterTuningJob``: validated as the local tuner will run it (``services.jobs.tuning_request``:
  either form of training job definition, ``HyperParameterTuningResourceConfig``, the search's spec, a warm start's
  parents), a problem answered as AWS's ``ValidationException`` (400); then ``InProgress`` with no trial yet; the
  local tuner (``services.jobs.tuning``) runs it in a thread of the emulator, each trial a training job with the
  job's ``TuningJobArn``
  (``DOGOPS_TRAINING_RUNNER=host``: left to a runner on the host, as training jobs are; ``off``: to nobody);
- the tuner reports through :func:`update` (status, ``TrainingJobStatusCounters``, ``ObjectiveStatusCounters``,
  ``BestTrainingJob``, the trials' summaries, end time, consumed seconds, failure reason);
- ``ListTrainingJobsForHyperParameterTuningJob``: the trials' ``HyperParameterTrainingJobSummary`` list;
- ``StopHyperParameterTuningJob``: ``Stopping``; the tuner stops its running trials and ends ``Stopped``.
"""

from functools import partial

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from ..jobs.tuning_request import RequestError, read
from . import sagemaker_training
from .sagemaker_lists import page

KIND = "HyperParameterTuningJob"
_original_create = SageMakerResponse.create_hyper_parameter_tuning_job
SORT_KEYS = {"Name": lambda t: t["TrainingJobName"], "CreationTime": lambda t: t["CreationTime"],
             "Status": lambda t: t["TrainingJobStatus"],
             "FinalObjectiveMetricValue": lambda t: t.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get(
                 "Value", float("inf"))}


def _job(account: str, region: str, name: str):
    try:
        return sagemaker_backends[account][region].hyper_parameter_tuning_jobs[name]
    except KeyError:
        raise ValidationError(f"Could not find hyper parameter tuning job '{name}'.") from None


def update(account: str, region: str, name: str, status: str | None = None, secondary: str | None = None,
           message: str = "", **fields) -> None:
    """Set the tuning job's status and any described field in snake case (``training_job_status_counters``,
    ``best_training_job``, ``trials``: the summaries listed, ``hyper_parameter_tuning_end_time``, ...)."""
    job = _job(account, region, name)
    with sagemaker_training._lock:
        if status:
            job.hyper_parameter_tuning_job_status = status
        for key, value in fields.items():
            setattr(job, "OverallBestTrainingJob" if key == "overall_best_training_job" else key, value)
        job.last_modified_time = utcnow()


def _create(self) -> ActionResult:
    try:
        read(self.params)
    except RequestError as exc:
        raise ValidationError(str(exc)) from None
    for parent in self.params.get("WarmStartConfig", {}).get("ParentHyperParameterTuningJobs", []):
        _job(self.current_account, self.region, parent.get("HyperParameterTuningJobName"))  # one that exists
    result = _original_create(self)
    name = self._get_param("HyperParameterTuningJobName")
    job = _job(self.current_account, self.region, name)
    job.hyper_parameter_tuning_job_status = "InProgress"
    job.hyper_parameter_tuning_end_time = job.best_training_job = job.OverallBestTrainingJob = None
    job.failure_reason = job.tuning_job_completion_details = job.consumed_resources = None
    job.training_job_status_counters = {k: 0 for k in ("Completed", "InProgress", "RetryableError",
                                                       "NonRetryableError", "Stopped")}
    job.objective_status_counters = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    job.trials = []
    job.tags = job.tags or []  # moto's ListTags fails on None
    sagemaker_training.dispatch(self, KIND, name, _run)
    return result


def _run(name: str, account: str, region: str, emulator_url: str) -> None:
    from ..jobs import tuning  # imported once a job runs

    tuning.start(name, region, emulator_url, partial(update, account, region, name),
                 lambda trial, **fields: sagemaker_training.update(account, region, trial, **fields))


def _list_trials(self) -> ActionResult:
    job = _job(self.current_account, self.region, self._get_param("HyperParameterTuningJobName"))
    trials = list(getattr(job, "trials", []))
    if self._get_param("StatusEquals"):
        trials = [t for t in trials if t["TrainingJobStatus"] == self._get_param("StatusEquals")]
    trials.sort(key=SORT_KEYS[self._get_param("SortBy") or "Name"],
                reverse=(self._get_param("SortOrder") or "Ascending") == "Descending")
    return ActionResult(page(trials, "TrainingJobSummaries", self._get_param("MaxResults"),
                             self._get_param("NextToken")))


def _stop(self) -> ActionResult:
    name = self._get_param("HyperParameterTuningJobName")
    job = _job(self.current_account, self.region, name)
    if job.hyper_parameter_tuning_job_status != "InProgress":
        raise ValidationError(f"The request was rejected because the tuning job is in status "
                              f"{job.hyper_parameter_tuning_job_status}.")
    running = sagemaker_training.runner() == "on" or sagemaker_training.claimed(KIND, self.current_account, self.region, name)
    update(self.current_account, self.region, name, "Stopping" if running else "Stopped",
           **({} if running else {"hyper_parameter_tuning_end_time": utcnow()}))  # else nothing runs it
    return ActionResult({})


sagemaker_training.UPDATES[KIND] = update
SageMakerResponse.create_hyper_parameter_tuning_job = _create
SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = _list_trials
SageMakerResponse.stop_hyper_parameter_tuning_job = _stop
