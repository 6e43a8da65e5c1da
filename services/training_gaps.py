"""SageMaker training jobs on moto's server that really run (imported by ``services.emulator``).

moto 5 marks a training job ``Completed`` the moment it is created, replaces its ``MetricDefinitions``
with its own, drops ``Environment`` and has no ``StopTrainingJob``. Here:

- ``CreateTrainingJob`` keeps the request as sent (a name in use is ``ResourceInUse``, as on AWS); the job
  is ``InProgress`` / ``Starting``, and the local runner (``services.training_jobs``) runs it from its
  description in a thread of the emulator, as SageMaker runs what it is asked to (any client: boto3, an SDK,
  ``dogops promote train``). ``DOGOPS_TRAINING_RUNNER=off`` leaves created jobs ``InProgress``.
- the runner reports through :func:`update` (status, secondary status with its transitions, failure
  reason, metrics, billable and training seconds), straight on moto's backend: it runs in this process.
- ``StopTrainingJob``: ``Stopping``, the runner sends SIGTERM (as ``docker stop`` does), then ``Stopped``.
"""

import os
import threading

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

_lock = threading.Lock()
_original_create = SageMakerResponse.create_training_job


def _job(account: str, region: str, name: str):
    try:
        return sagemaker_backends[account][region].training_jobs[name]
    except KeyError:
        raise ValidationError(f"Requested resource not found: training job {name}") from None


def update(account: str, region: str, name: str, status: str | None = None, secondary: str | None = None,
           message: str = "", **fields) -> None:
    """Set a job's status and secondary status (closing the open transition, opening the next) and any
    other described field, in snake case: ``failure_reason``, ``final_metric_data_list``, ..."""
    job = _job(account, region, name)
    now = utcnow()
    with _lock:
        if status:
            job.training_job_status = status
        if secondary and secondary != job.secondary_status:
            for transition in job.secondary_status_transitions:
                transition.setdefault("EndTime", now)
            job.secondary_status = secondary
            job.secondary_status_transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        if status in ("Completed", "Failed", "Stopped"):
            for transition in job.secondary_status_transitions:
                transition.setdefault("EndTime", now)
        for key, value in fields.items():
            setattr(job, key, value)
        job.last_modified_time = now


def _emulator_url(environ: dict) -> str:
    """This server as its own client reaches it (the socket it listens on)."""
    host = environ.get("SERVER_NAME", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{environ.get('SERVER_PORT', '80')}"


def _create_training_job(self) -> ActionResult:
    name = self._get_param("TrainingJobName")
    if name in self.sagemaker_backend.training_jobs:
        raise ResourceInUseException(f"Training job names must be unique within an AWS account and region, and a training "
                            f"job with this name already exists ({self.sagemaker_backend.training_jobs[name].arn})")
    definitions = self._get_param("AlgorithmSpecification", {}).get("MetricDefinitions")
    result = _original_create(self)
    job = self.sagemaker_backend.training_jobs[name]
    if definitions is None:
        job.algorithm_specification.pop("MetricDefinitions", None)
    else:
        job.algorithm_specification["MetricDefinitions"] = definitions
    job.environment = self._get_param("Environment")
    job.training_job_status, job.secondary_status = "InProgress", "Starting"
    job.training_start_time = job.training_end_time = None
    job.final_metric_data_list = None
    job.secondary_status_transitions = [{"Status": "Starting", "StartTime": job.creation_time,
                                         "StatusMessage": "Launching requested ML instances"}]
    if os.environ.get("DOGOPS_TRAINING_RUNNER", "on") != "off":
        from . import training_jobs

        training_jobs.start(name, self.current_account, self.region,
                            _emulator_url(self.normalized_request.environ))
    return result


def _stop_training_job(self) -> ActionResult:
    from . import training_jobs

    name = self._get_param("TrainingJobName")
    job = _job(self.current_account, self.region, name)
    if job.training_job_status != "InProgress":
        raise ValidationError(f"The request was rejected because the training job is in status "
                              f"{job.training_job_status}.")
    update(self.current_account, self.region, name, "Stopping", "Stopping", "Stopping the training job")
    if not training_jobs.stop(name):  # nothing runs it: stopped at once
        update(self.current_account, self.region, name, "Stopped", "Stopped", "The job was stopped")
    return ActionResult({})


SageMakerResponse.create_training_job = _create_training_job
SageMakerResponse.stop_training_job = _stop_training_job
