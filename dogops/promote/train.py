"""``dogops promote train``: the pushed training image as a SageMaker training job (contracts §B, §D).

The request is built with boto3 and checked against botocore's service model, not with the ``sagemaker`` SDK:
the SDK would only fill in this one ``CreateTrainingJob`` (v3 is several packages with their own pins, v2 is
deprecated and refuses spot and checkpoints in local mode), and the exact request is what the local stack runs
and the tests check. Settings come from ``promote.yaml``'s ``training:`` (``runs``); the jobs' role is the
stage's training stack's (``training_stack``), planned and applied first when the run changes it.

The job is watched until it ends (status and secondary status transitions, the log stream, the final metrics);
a completed job prints its billable seconds and spot saving and is recorded as the stage's candidate model
(``runs.record_candidate``). ``--ec2`` runs the same training on an EC2 spot instance instead (``ec2``).
"""

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

from training.metrics import metric_definitions

from ..iam_propagation import ROLE_NOT_ASSUMABLE, while_propagating
from ..sagemaker_model import validate
from .config import CONFIG, Stage, connect, require_digest
from .ec2 import add_ec2_arguments, train_on_ec2
from .limits import check
from .runs import CANDIDATE, DEFAULTS, locations, record_candidate, run_limits, settings, spot_saving
from .training_stack import ensure

CHANNEL = "training"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENDED = ("Completed", "Failed", "Stopped")


def spot_max_wait(max_run_s, max_wait_s) -> int:
    """A managed spot job's ``MaxWaitTimeInSeconds``: at least its ``MaxRuntimeInSeconds``, as SageMaker requires."""
    if int(max_wait_s) < int(max_run_s):
        raise ValueError(f"spot: max_wait_s ({max_wait_s}) must be at least max_run_s ({max_run_s})")
    return int(max_wait_s)


def job_name(stage: Stage, now: datetime | None = None) -> str:
    return f"{stage.project}-{stage.name}-{(now or datetime.now(timezone.utc)).strftime('%Y%m%d-%H%M%S')}"


def training_job_request(name: str, stage: Stage, image: str, role_arn: str, data: str, output: str,
                         checkpoints: str, hyperparameters: dict[str, str], instance_type: str, instances: int = 1,
                         spot: bool = False, max_run_s: int = 86400, max_wait_s: int = 172800,
                         volume_gb: int = 30) -> dict:
    """The ``CreateTrainingJob`` request SageMaker receives, validated against botocore's model."""
    require_digest(image, "training image")
    stopping = {"MaxRuntimeInSeconds": int(max_run_s)}
    request = {
        "TrainingJobName": name,
        "HyperParameters": dict(hyperparameters),
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                   "MetricDefinitions": metric_definitions()},
        "RoleArn": role_arn,
        "InputDataConfig": [{"ChannelName": CHANNEL, "InputMode": "File", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": data, "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": int(instances),
                           "VolumeSizeInGB": int(volume_gb)},
        "StoppingCondition": stopping,
        "Tags": stage.tags(),
    }
    if spot:
        stopping["MaxWaitTimeInSeconds"] = spot_max_wait(max_run_s, max_wait_s)
        request["EnableManagedSpotTraining"] = True
        request["CheckpointConfig"] = {"S3Uri": f"{checkpoints.rstrip('/')}/{name}", "LocalPath": "/opt/ml/checkpoints"}
    validate(request, "CreateTrainingJob")
    return request


def create(sm, request: dict, role_changed: bool, echo=print, operation: str = "create_training_job") -> None:
    """``CreateTrainingJob`` (or ``operation``); a role made or changed just now may take seconds to be usable on AWS
    (``iam_propagation``: retried for up to a minute then, not at all otherwise)."""
    while_propagating(lambda: getattr(sm, operation)(**request), ROLE_NOT_ASSUMABLE, "role",
                      60 if role_changed else 0, echo)


class LogTail:
    """New lines of the job's log streams (``/aws/sagemaker/TrainingJobs``, ``<job>/<host>-<epoch>``)."""

    def __init__(self, logs, name: str):
        self.logs, self.name, self.tokens = logs, name, {}

    def lines(self) -> list[str]:
        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/")
        except self.logs.exceptions.ResourceNotFoundException:
            return []
        out = []
        for stream in sorted(s["logStreamName"] for s in streams["logStreams"]):
            while True:
                kwargs = {"nextToken": self.tokens[stream]} if stream in self.tokens else {}
                page = self.logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True,
                                                **kwargs)
                self.tokens[stream] = page["nextForwardToken"]
                out += [f"[{stream.split('/', 1)[1]}] {e['message']}" for e in page["events"]]
                if not page["events"]:
                    break
        return out


def wait(session, name: str, echo=print, poll_s: float = 5.0, timeout_s: float | None = None) -> dict:
    """Watch the job to its end, echoing status transitions and log lines; return its last description."""
    sm, tail = session.client("sagemaker"), LogTail(session.client("logs"), name)
    shown, status = 0, None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        for line in tail.lines():
            echo(line)
        if job["TrainingJobStatus"] != status:
            status = job["TrainingJobStatus"]
            echo(f"status: {status}")
        transitions = job.get("SecondaryStatusTransitions", [])
        for transition in transitions[shown:]:
            echo(f"  {transition['Status']}: {transition.get('StatusMessage', '')}")
        shown = len(transitions)
        if status in ENDED:
            for line in tail.lines():
                echo(line)
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"training job {name} is still {status} after {timeout_s} s")
        time.sleep(poll_s)


def summary(job: dict) -> list[str]:
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    count = job["ResourceConfig"]["InstanceCount"]
    lines = [f"training job {job['TrainingJobName']}: {job['TrainingJobStatus']} ({job.get('SecondaryStatus')})",
             f"  training time {job.get('TrainingTimeInSeconds', 0)} s, billable {job.get('BillableTimeInSeconds', 0)} s"
             f" per instance x {count} {job['ResourceConfig']['InstanceType']}"]
    saving = spot_saving(job)
    if saving is not None:
        lines.append(f"  managed spot saving {saving:.0f}% (1 - billable/training time)")
    if metrics:
        lines.append("  final metrics: " + " ".join(f"{k}={v:g}" for k, v in metrics.items()))
    if job["TrainingJobStatus"] == "Completed":
        lines.append(f"  model {job['ModelArtifacts']['S3ModelArtifacts']}")
    elif job.get("FailureReason"):
        lines.append(f"  failure: {job['FailureReason']}")
    return lines


def run_here_if_left_to_the_host(args, session, name: str, echo=print) -> None:
    """The local stack in compose leaves jobs to the host (its emulator has neither Docker nor torch): run this
    one here, in the image it names."""
    if args.aws:
        return
    from services.jobs.training import run_on_host

    if run_on_host(session, name):
        echo(f"the local stack leaves training jobs to the host: running {name} here, in its image")


def run(args, echo=print) -> dict:
    """``dogops promote train``: the training stack (the role), request, create, watch, report, record."""
    conf = settings(args.stage, args.config)
    ec2 = getattr(args, "ec2", False)
    check(args.config, run_limits(conf, args.spot and not ec2, args.instances,
                                  getattr(args, "max_interruptions", None) if ec2 else None))
    stage, session = connect(args.stage, args.config, args.aws, limits=False)
    if ec2:
        return train_on_ec2(args, stage, session, echo)
    where = locations(conf, args.data, args.output)
    infrastructure = ensure(session, stage, where, args.image, conf["volume_gb"], echo)
    role = infrastructure.outputs["TrainingJobsRoleArn"]
    name = args.name or job_name(stage)
    request = training_job_request(name, stage, args.image, role, where.data, where.output, where.checkpoints,
                                   conf["hyperparameters"], args.instance_type or conf["instance_type"],
                                   args.instances, args.spot, conf["max_run_s"], conf["max_wait_s"], conf["volume_gb"])
    create(session.client("sagemaker"), request, infrastructure.iam_changed, echo)
    echo(f"training job {name}: {args.instances} x {request['ResourceConfig']['InstanceType']}"
         f"{' (managed spot)' if args.spot else ''}, image {args.image}, role {role}")
    run_here_if_left_to_the_host(args, session, name, echo)
    job = wait(session, name, echo, args.poll)
    for line in summary(job):
        echo(line)
    if job["TrainingJobStatus"] != "Completed":
        raise SystemExit(f"training job {name} {job['TrainingJobStatus']}: {job.get('FailureReason', '')}")
    record = record_candidate(job, stage, args.candidate)
    echo(f"recorded as the {stage.name} candidate: {args.candidate}")
    return record


def job_arguments(parser) -> None:
    """The arguments ``promote train`` and ``promote tune`` share."""
    parser.add_argument("--stage", required=True, help="a stage of the config (dev, prod)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--aws", action="store_true", help="run on AWS: every endpoint boto3 resolves must be "
                        "AWS's; without it, every one must be the local stack's")
    parser.add_argument("--image", required=True, help="the training image in ECR, by digest")
    parser.add_argument("--spot", action="store_true", help="managed spot training, with checkpoints in S3")
    parser.add_argument("--instance-type", help=f"(default: training.instance_type, else {DEFAULTS['instance_type']})")
    parser.add_argument("--data", help="s3:// prefix of the training channel (default: training.data)")
    parser.add_argument("--output", help="s3:// prefix for the models (default: training.output)")
    parser.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)


def train_arguments(train) -> None:
    """``dogops promote train``'s arguments (``promote.cli`` names the command)."""
    job_arguments(train)
    train.add_argument("--instances", type=int, default=1, help="instances training data-parallel (default: 1)")
    train.add_argument("--name", help="the job's name (default: <project>-<stage>-<UTC time>)")
    add_ec2_arguments(train)
    train.add_argument("--candidate", type=Path, default=CANDIDATE, help=argparse.SUPPRESS)
    train.set_defaults(func=run)
