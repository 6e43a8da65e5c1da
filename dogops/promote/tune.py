"""``dogops promote tune``: the tuning spec as a SageMaker hyperparameter tuning job (contracts §B.9).

The spec (``dogops/tuning/spec.py``: the vocabulary of ``HyperParameterTuningJobConfig``) becomes the
``CreateHyperParameterTuningJob`` request ``dogops.tuning.request`` builds, completed for the stage as ``promote
train`` completes a training job: the pushed training image by digest, the stage's training role, the training
channel, output and settings of ``promote.yaml`` (``training:``; its hyperparameters are the static ones the spec
does not tune or set), tags, managed spot with per-trial checkpoints when asked, a warm start from earlier tuning
jobs when asked; checked against botocore's model (its enums, patterns and maximums too). The job is watched to
its end (status, counters, each trial with its tuned values and objective); the best training job's model is
recorded as "best" (``.dogops/best.json``, and ``.dogops/tuning-jobs/<job>.json``), which ``dogops promote
apply`` (``make promote``) deploys.

On the local stack the emulator runs the job with the local tuner (``services.jobs.tuning``, its trials as
training jobs); where it leaves jobs to the host (compose), this command runs it here, the trials in the image.
"""

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

from ..sagemaker_model import validate
from ..tuning.best import CURRENT
from ..tuning.request import tuning_job_request
from ..tuning.spec import SpecError, TuningSpec, load_spec
from .config import Stage, connect, require_digest
from .limits import check
from .runs import locations, run_limits, settings, write_record
from .train import create, job_arguments, spot_max_wait
from .training_stack import ensure

ENDED = ("Completed", "Failed", "Stopped")
WARM_START_TYPES = ("IdenticalDataAndAlgorithm", "TransferLearning")


def tuning_job_name(stage: Stage, now: datetime | None = None) -> str:
    """At most 32 characters, as SageMaker allows (trials add ``-NNN-<8 hex>``)."""
    return f"{stage.project}-{stage.name}-{(now or datetime.now(timezone.utc)).strftime('%y%m%d-%H%M%S')}"[:32]


def tune_request(spec: TuningSpec, name: str, stage: Stage, image: str, role_arn: str, conf: dict,
                 instance_type: str | None = None, spot: bool = False, warm_start: tuple[str, ...] = (),
                 warm_start_type: str = "IdenticalDataAndAlgorithm") -> dict:
    """The ``CreateHyperParameterTuningJob`` request SageMaker receives, validated against botocore's model."""
    require_digest(image, "training image")
    where = locations(conf)
    request = tuning_job_request(spec, name, image, role_arn, where.data, where.output,
                                 instance_type or conf["instance_type"], int(conf["max_run_s"]))
    definition = request["TrainingJobDefinition"]
    tuned = {r.name for r in spec.ranges}
    definition["StaticHyperParameters"] = {**{k: v for k, v in conf["hyperparameters"].items() if k not in tuned},
                                           **spec.static}
    definition["ResourceConfig"]["VolumeSizeInGB"] = int(conf["volume_gb"])
    if spot:
        definition["EnableManagedSpotTraining"] = True
        definition["StoppingCondition"]["MaxWaitTimeInSeconds"] = spot_max_wait(conf["max_run_s"], conf["max_wait_s"])
        definition["CheckpointConfig"] = {"S3Uri": f"{where.checkpoints}/{name}", "LocalPath": "/opt/ml/checkpoints"}
    if warm_start:
        request["WarmStartConfig"] = {"ParentHyperParameterTuningJobs": [
            {"HyperParameterTuningJobName": parent} for parent in warm_start], "WarmStartType": warm_start_type}
    request["Tags"] = stage.tags()
    validate(request, "CreateHyperParameterTuningJob")
    return request


def _trial_line(trial: dict) -> str:
    tuned = ", ".join(f"{k}={v}" for k, v in trial.get("TunedHyperParameters", {}).items())
    objective = trial.get("FinalHyperParameterTuningJobObjectiveMetric")
    result = f" {objective['MetricName']}={objective['Value']:g}" if objective else ""
    reason = f": {trial['FailureReason'].splitlines()[0]}" if trial.get("FailureReason") else ""
    return f"  trial {trial['TrainingJobName']} ({tuned}): {trial['TrainingJobStatus']}{result}{reason}"


def wait(session, name: str, echo=print, poll_s: float = 5.0, timeout_s: float | None = None) -> dict:
    """Watch the tuning job to its end, echoing its status, counters and trials; return its last description."""
    sm = session.client("sagemaker")
    status, counters, shown = None, None, {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name, SortBy="CreationTime", SortOrder="Ascending")
        trials = [trial for page in pages for trial in page["TrainingJobSummaries"]]  # AWS lists 10 at a time
        for trial in trials:
            if shown.get(trial["TrainingJobName"]) != trial["TrainingJobStatus"]:
                shown[trial["TrainingJobName"]] = trial["TrainingJobStatus"]
                echo(_trial_line(trial))
        if job["HyperParameterTuningJobStatus"] != status:
            status = job["HyperParameterTuningJobStatus"]
            echo(f"status: {status}")
        if job.get("TrainingJobStatusCounters") != counters:
            counters = job.get("TrainingJobStatusCounters")
            echo("  training jobs: " + ", ".join(f"{k} {v}" for k, v in (counters or {}).items() if v))
        if status in ENDED:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"tuning job {name} is still {status} after {timeout_s} s")
        time.sleep(poll_s)


def record_best(session, job: dict, stage: Stage, path: Path = CURRENT) -> dict:
    """The best training job's model as the project's best (what ``promote apply`` deploys by default)."""
    best = job["BestTrainingJob"]
    training = session.client("sagemaker").describe_training_job(TrainingJobName=best["TrainingJobName"])
    objective = best["FinalHyperParameterTuningJobObjectiveMetric"]
    record = {"tuning_job": job["HyperParameterTuningJobName"], "trial": best["TrainingJobName"],
              "stage": stage.name, "model_data_url": training["ModelArtifacts"]["S3ModelArtifacts"],
              "objective": {"name": objective["MetricName"], "value": objective["Value"]},
              "metrics": {m["MetricName"]: m["Value"] for m in training.get("FinalMetricDataList", [])},
              "hyperparameters": {k: v for k, v in training.get("HyperParameters", {}).items()
                                  if k != "_tuning_objective_metric"},
              "tuned": best.get("TunedHyperParameters", {}), "image": training["AlgorithmSpecification"]["TrainingImage"]}
    write_record(record, path, "tuning-jobs", record["tuning_job"])
    return record


def run(args, echo=print) -> dict:
    """``dogops promote tune``: spec, the training stack (the role), request, create, watch, record the best."""
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        raise SystemExit(f"{args.spec}: {exc}") from None
    conf = settings(args.stage, args.config)
    spec_limits = "the spec's ResourceLimits."
    check(args.config, {**run_limits(conf, args.spot),
                        "tuning_max_jobs": (spec_limits + "MaxNumberOfTrainingJobs", spec.max_jobs),
                        "tuning_max_parallel_jobs": (spec_limits + "MaxParallelTrainingJobs", spec.max_parallel)})
    stage, session = connect(args.stage, args.config, args.aws, limits=False)
    where = locations(conf, args.data, args.output)
    conf.update(data=where.data, output=where.output, checkpoints=where.checkpoints)
    infrastructure = ensure(session, stage, where, args.image, conf["volume_gb"], echo)
    role = infrastructure.outputs["TrainingJobsRoleArn"]
    name = args.name or tuning_job_name(stage)
    request = tune_request(spec, name, stage, args.image, role, conf, args.instance_type, args.spot,
                           tuple(args.warm_start_from or ()), args.warm_start_type)
    create(session.client("sagemaker"), request, infrastructure.iam_changed, echo,
           operation="create_hyper_parameter_tuning_job")
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    echo(f"tuning job {name}: {spec.strategy}, {spec.direction} {spec.objective}, {limits['MaxNumberOfTrainingJobs']}"
         f" training jobs, {limits['MaxParallelTrainingJobs']} at once{' (managed spot)' if args.spot else ''}"
         + (f", warm start from {', '.join(args.warm_start_from)}" if args.warm_start_from else "")
         + f"; image {args.image}, role {role}")
    if not args.aws:
        from services.jobs.tuning import run_on_host

        if run_on_host(session, name):
            echo(f"the local stack leaves jobs to the host: running {name} here, its trials in the image")
    job = wait(session, name, echo, args.poll)
    if job["HyperParameterTuningJobStatus"] != "Completed" or not job.get("BestTrainingJob"):
        raise SystemExit(f"tuning job {name} {job['HyperParameterTuningJobStatus']}: {job.get('FailureReason', '')}")
    record = record_best(session, job, stage, args.best)
    echo(f"best: {record['trial']} {record['objective']['name']}={record['objective']['value']:g} "
         f"({', '.join(f'{k}={v}' for k, v in record['tuned'].items())}); model {record['model_data_url']}")
    echo(f"recorded as the best model: {args.best} (`dogops promote apply` deploys it)")
    return record


def tune_arguments(tune) -> None:
    """``dogops promote tune``'s arguments (``promote.cli`` names the command)."""
    job_arguments(tune)
    tune.add_argument("--spec", type=Path, help="tuning spec, YAML or JSON (default: the original project's search)")
    tune.add_argument("--warm-start-from", action="append", metavar="JOB",
                      help="a previous tuning job to start from (repeatable, up to 5)")
    tune.add_argument("--warm-start-type", choices=WARM_START_TYPES, default=WARM_START_TYPES[0])
    tune.add_argument("--name", help="the job's name, at most 32 characters (default: <project>-<stage>-<UTC time>)")
    tune.add_argument("--best", type=Path, default=CURRENT, help=argparse.SUPPRESS)
    tune.set_defaults(func=run)
