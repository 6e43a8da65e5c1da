"""SageMaker training jobs on moto's server that really run (imported by ``services.emulator.server``).

moto 5 marks a training job ``Completed`` the moment it is created, replaces its ``MetricDefinitions``
with its own, drops ``Environment`` and has no ``StopTrainingJob``. Here:

- ``CreateTrainingJob`` keeps the request as sent (a name in use is ``ResourceInUse``, as on AWS); the job
  is ``InProgress`` / ``Starting``, and the local runner (``services.jobs.training``) runs it from its
  description in a thread of the emulator, as SageMaker runs what it is asked to (any client: boto3, an SDK,
  ``dogops promote train``). ``DOGOPS_TRAINING_RUNNER=off`` leaves created jobs ``InProgress``;
  ``DOGOPS_TRAINING_RUNNER=host`` (compose: the emulator's container has neither Docker nor torch) leaves them
  to a runner on the host, which claims one (``DogopsClaimJob``) and reports on it (``DogopsReportJob``): the
  emulator's own SageMaker actions, signed as any, that ``services.jobs.training.run_on_host`` calls.
- the runner reports through :func:`update` (status, secondary status with its transitions, failure
  reason, metrics, billable and training seconds), straight on moto's backend: it runs in this process.
- ``StopTrainingJob``: ``Stopping``, the runner sends SIGTERM (as ``docker stop`` does), then ``Stopped``.
"""

import json
import os
import threading
from collections.abc import Callable
from functools import partial

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

_lock = threading.Lock()
_original_create = SageMakerResponse.create_training_job
_left_to_host: set[tuple] = set()  # (kind, account, region, name): jobs a host runner may claim
_claimed: set[tuple] = set()  # ... and those it claimed (it reports on them)
UPDATES: dict[str, Callable] = {}  # kind -> update(account, region, name, status, secondary, message, **fields)


def runner() -> str:
    """``DOGOPS_TRAINING_RUNNER``: ``on`` (this process runs created jobs), ``off`` (nobody), ``host``."""
    value = os.environ.get("DOGOPS_TRAINING_RUNNER", "on")
    if value not in ("on", "off", "host"):
        raise ValueError(f"DOGOPS_TRAINING_RUNNER must be on, off or host, not {value!r}")
    return value


def leave_to_host(kind: str, account: str, region: str, name: str) -> None:
    with _lock:
        _left_to_host.add((kind, account, region, name))


def claimed(kind: str, account: str, region: str, name: str) -> bool:
    return (kind, account, region, name) in _claimed


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


def dispatch(response, kind: str, name: str, start: Callable[[str, str, str, str], None]) -> None:
    """A job just created: run here by ``start(name, account, region, emulator_url)``
    (``DOGOPS_TRAINING_RUNNER=on``), or left for a runner on the host to claim (``host``), or left alone (``off``)."""
    mode = runner()
    if mode == "on":
        start(name, response.current_account, response.region, _emulator_url(response.normalized_request.environ))
    elif mode == "host":
        leave_to_host(kind, response.current_account, response.region, name)


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
    dispatch(self, "TrainingJob", name, _run)
    return result


def _run(name: str, account: str, region: str, emulator_url: str) -> None:
    from ..jobs import training  # imported once a job runs

    training.start(name, region, emulator_url, partial(update, account, region, name))


def _stop_training_job(self) -> ActionResult:
    from ..jobs import training

    name = self._get_param("TrainingJobName")
    job = _job(self.current_account, self.region, name)
    if job.training_job_status != "InProgress":
        raise ValidationError(f"The request was rejected because the training job is in status "
                              f"{job.training_job_status}.")
    update(self.current_account, self.region, name, "Stopping", "Stopping", "Stopping the training job")
    if not training.stop(name) and not claimed("TrainingJob", self.current_account, self.region, name):
        # nothing runs it: stopped at once (a host runner sees Stopping and stops its job)
        update(self.current_account, self.region, name, "Stopped", "Stopped", "The job was stopped")
    return ActionResult({})


_original_parse = SageMakerResponse.parse_parameters


def _parse_parameters(self, request) -> None:
    """The emulator's own actions are not in botocore's model: their body is the parameters."""
    if self._get_action().startswith("Dogops"):
        self.params = json.loads(request.data or b"{}")
    else:
        _original_parse(self, request)


def _dogops_claim_job(self) -> str:
    """``DogopsClaimJob`` ``{Kind, Name}``: ``{"Claimed": true}`` once, for a job left to the host."""
    key = (self._get_param("Kind"), self.current_account, self.region, self._get_param("Name"))
    with _lock:
        got = key in _left_to_host
        _left_to_host.discard(key)
        if got:
            _claimed.add(key)
    return json.dumps({"Claimed": got})


def _dogops_report_job(self) -> str:
    """``DogopsReportJob`` ``{Kind, Name, Report}``: a claimed job's status and fields, from its runner."""
    from ..jobs.training import decode

    kind, name = self._get_param("Kind"), self._get_param("Name")
    if not claimed(kind, self.current_account, self.region, name):
        raise ValidationError(f"{kind} {name} was not claimed by a runner")
    report = decode(self._get_param("Report"))
    UPDATES[kind](self.current_account, self.region, name, report["status"], report["secondary"],
                  report["message"], **report["fields"])
    return "{}"


UPDATES["TrainingJob"] = update
SageMakerResponse.create_training_job = _create_training_job
SageMakerResponse.stop_training_job = _stop_training_job
SageMakerResponse.parse_parameters = _parse_parameters
SageMakerResponse.dogops_claim_job = _dogops_claim_job
SageMakerResponse.dogops_report_job = _dogops_report_job
