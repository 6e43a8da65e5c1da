"""The local stack's SageMaker training: a created training job run from its description, as SageMaker runs it.

``services.emulator.sagemaker_training`` starts :func:`start` in a thread of the emulator for every ``CreateTrainingJob``. The
runner reads ``DescribeTrainingJob`` and, per "instance" (``algo-1`` ... ``algo-N``, each its own ``/opt/ml``
tree under a temporary folder):

- ``Downloading``: every channel's ``S3Prefix`` into ``input/data/<channel>``; the objects under
  ``CheckpointConfig.S3Uri`` into ``checkpoints/``; ``input/config/{hyperparameters,inputdataconfig,
  resourceconfig}.json`` (contracts §B.2, §B.3);
- ``Training``: ``train`` with ``SAGEMAKER_BASE_DIR`` (native; ``DOGOPS_TRAINING_MODE=docker`` or no ``train``
  script: ``docker run IMAGE train`` with the tree at ``/opt/ml``, the image pulled by digest from the registry
  the emulator's ECR names when it is not here), N hosts joined over loopback
  (``MASTER_ADDR=127.0.0.1``: the only adaptation; SageMaker resolves ``algo-1`` instead). A job that names a
  user script (``sagemaker_program`` with ``sagemaker_submit_directory``) or a ``ContainerEntrypoint``, on
  dogops' image or AWS's PyTorch training container (``framework_images``), runs in script mode
  (``script_mode``: the source in ``code/``, natively a job-private venv per host, the entrypoint with the
  tree at ``/opt/ml``; in Docker the DLC is the dogops image). Each host's output
  goes to CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, stream ``<job>/<host>-<epoch seconds>``) and
  through the job's ``MetricDefinitions``, whose values go to CloudWatch metrics as SageMaker publishes them (namespace
  ``/aws/sagemaker/TrainingJobs``, dimension ``TrainingJobName``: what the SDK's ``TrainingJobAnalytics`` reads);
  checkpoints are synced to S3 as they change;
- ``Uploading``: the hosts' ``model/`` merged and packed (reproducibly) to
  ``<S3OutputPath>/<job>/output/model.tar.gz`` (and the first host's ``output/data``, if any, to
  ``output.tar.gz`` beside it); then ``Completed`` with ``ModelArtifacts``,
  ``FinalMetricDataList``, ``TrainingTimeInSeconds`` and ``BillableTimeInSeconds``. A non-zero exit is
  ``Failed`` with ``output/failure`` as ``FailureReason``; ``StopTrainingJob`` and ``MaxRuntimeInSeconds``
  SIGTERM the hosts (SIGKILL after 120 s) and end ``Stopped``.

Managed spot, rehearsed: with ``DOGOPS_SPOT_INTERRUPT=epoch=N`` (or ``after=S`` seconds of training) in the
emulator's environment, a spot job's first attempt gets SIGTERM like the two-minute notice once a host
logs ``epoch=N``; it is ``Interrupted``, waits ``DOGOPS_SPOT_CAPACITY_WAIT_S`` (default 1) "for capacity"
(not billed), and starts again from scratch: data downloaded again, checkpoints restored from S3
(``MaxWaitTimeExceeded`` if the wait runs out). Billable time is the instances' busy time (per instance,
as AWS reports it), with no spot discount: the local saving is the time not billed.

Run by the host (``DOGOPS_TRAINING_RUNNER=host``: compose, whose emulator container has neither Docker nor
torch): the emulator leaves a created job ``Starting`` for a runner to claim; :func:`run_on_host` (``dogops
promote train``/``tune`` call it) claims it and runs it here, in docker mode by default, reporting through the
emulator's ``DogopsReportJob`` action (``services.emulator.sagemaker_training``) and noticing ``StopTrainingJob`` there.
"""

import atexit
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import boto3

from dogops.s3upload import parse_s3_uri
from training.archive import pack
from training.metrics import MetricReader
from training.private_env import private_python
from training.sagemaker_env import resource_config, write_job_config

from ..hosting.containers import docker, free_port, pull_missing
from ..observability.cloudwatch_logs import LogWriter
from ..observability.metrics import MetricPublisher
from ..stack import settings
from . import script_mode
from .framework_images import pytorch_training
from .sagemaker_s3 import download_prefix

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
KILL_AFTER_S = 120  # docker stop -t 120, as SageMaker stops a training container
_running: dict[str, "Run"] = {}
_running_lock = threading.Lock()
_observers: dict[str, Callable[[str, float], None]] = {}  # job -> observer(metric, value) of every metric line

Report = Callable[..., None]  # report(status, secondary, message, **described fields in snake case)


class AlgorithmFailed(Exception):
    """The training exited non-zero: the job is ``Failed`` with this reason."""


class JobStopped(Exception):
    """The job ends ``Stopped`` with this secondary status (Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded)."""


def start(name: str, region: str, emulator_url: str, report: Report) -> None:
    """Run job ``name`` of the emulator at ``emulator_url`` in a thread, reporting through ``report`` (the
    emulator's, on moto's backend)."""
    run = Run(name, _session(region), emulator_url, report)
    with _running_lock:
        _running[name] = run
    threading.Thread(target=run.main, name=f"training-job-{name}", daemon=True).start()


def observe(name: str, observer: Callable[[str, float], None] | None) -> None:
    """Call ``observer(metric, value)`` for each metric job ``name`` logs from now on (None: stop observing);
    the local tuner's early stopping watches its trials' objective so."""
    with _running_lock:
        if observer is None:
            _observers.pop(name, None)
        else:
            _observers[name] = observer


def run_on_host(session, name: str, mode: str | None = None) -> bool:
    """Claim job ``name`` from the emulator ``session`` points at, when it leaves jobs to the host, and run it
    here in a thread (``mode``: default ``DOGOPS_TRAINING_MODE``, else docker: the described image). False when
    the emulator runs it itself (or another runner claimed it)."""
    if not claim(session, "TrainingJob", name):
        return False
    sm = session.client("sagemaker")
    run = Run(name, _session(sm.meta.region_name), sm.meta.endpoint_url, remote_report(session, "TrainingJob", name),
              mode or os.environ.get("DOGOPS_TRAINING_MODE") or "docker", remote=True)
    with _running_lock:
        _running[name] = run
    threading.Thread(target=run.main, name=f"training-job-{name}", daemon=True).start()
    return True


def _dogops_action(session, action: str, body: dict) -> dict:
    """One of the emulator's own SageMaker actions (``services.emulator.sagemaker_training``), signed like any SageMaker request."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    sm = session.client("sagemaker")
    data = json.dumps(body, default=_encode)
    request = AWSRequest("POST", sm.meta.endpoint_url + "/", data=data,
                         headers={"X-Amz-Target": f"SageMaker.{action}", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(session.get_credentials().get_frozen_credentials(), "sagemaker", sm.meta.region_name).add_auth(request)
    answer = requests.post(request.url, data=data, headers=dict(request.headers), timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{action}: {answer.status_code} {answer.text[:500]}")
    return answer.json()


def _encode(value):
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode(document: str):
    """A report's fields as sent (datetimes included)."""
    return json.loads(document, object_hook=lambda o: datetime.fromisoformat(o["__datetime__"])
                      if set(o) == {"__datetime__"} else o)


def claim(session, kind: str, name: str) -> bool:
    """Claim a ``TrainingJob`` or ``HyperParameterTuningJob`` the emulator leaves to the host; True if this
    runner got it."""
    return bool(_dogops_action(session, "DogopsClaimJob", {"Kind": kind, "Name": name}).get("Claimed"))


def remote_report(session, kind: str, name: str) -> Report:
    """A runner's report on the emulator's job, from another process."""
    def report(status: str | None = None, secondary: str | None = None, message: str = "", **fields) -> None:
        _dogops_action(session, "DogopsReportJob", {"Kind": kind, "Name": name, "Report": json.dumps(
            {"status": status, "secondary": secondary, "message": message, "fields": fields}, default=_encode)})
    return report


def stop(name: str) -> bool:
    """``StopTrainingJob``: SIGTERM the job's hosts; False when nothing runs it."""
    with _running_lock:
        run = _running.get(name)
    if run is None:
        return False
    run.stop_requested = "Stopped"
    return True


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        runs = list(_running.values())
    for run in runs:
        run.signal_hosts(signal.SIGKILL)


def _session(region: str) -> boto3.Session:
    return boto3.Session(aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                         region_name=region)


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "(none installed)"


def _spot_rehearsal() -> tuple[str, float] | None:
    """``DOGOPS_SPOT_INTERRUPT``: ``("epoch", N)`` or ``("after", S)``, or None."""
    raw = os.environ.get("DOGOPS_SPOT_INTERRUPT", "").strip()
    if not raw:
        return None
    kind, _, value = raw.partition("=")
    if kind not in ("epoch", "after"):
        raise ValueError(f"DOGOPS_SPOT_INTERRUPT must be epoch=N or after=SECONDS, not {raw!r}")
    return kind, float(value)


@dataclasses.dataclass
class Host:
    """One instance of the job: its ``/opt/ml`` tree, process, log stream and checkpoint sync state."""

    name: str
    base: Path
    stream: str
    proc: subprocess.Popen | None = None
    synced: dict = dataclasses.field(default_factory=dict)  # checkpoint file -> (size, mtime) uploaded

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"


class Run:
    """One training job from its description to its end."""

    def __init__(self, name: str, session: boto3.Session, url: str, report: Report, mode: str | None = None,
                 remote: bool = False):
        native = Path(sys.executable).parent / "train"
        self.name, self.report, self.remote = name, report, remote
        self.mode = mode or os.environ.get("DOGOPS_TRAINING_MODE") or ("native" if native.exists() else "docker")
        self.sm, self.s3 = (session.client(s, endpoint_url=url) for s in ("sagemaker", "s3"))
        self.logs = LogWriter(session.client("logs", endpoint_url=url))
        cloudwatch = session.client("cloudwatch", endpoint_url=url)
        self.published = MetricPublisher(lambda region: cloudwatch)  # the metric definitions' values
        self.stop_requested: str | None = None
        self.stop_checked_at = 0.0  # when a remote runner last asked the emulator (_stop_asked)
        self.hosts: list[Host] = []
        self.metrics: dict[str, dict] = {}
        self.notes: list[str] = []  # the runner's own lines at the head of algo-1's log
        self.lock = threading.Lock()

    # -- the job ---------------------------------------------------------------------------------------------
    def main(self) -> None:
        try:
            self.job = self.sm.describe_training_job(TrainingJobName=self.name)
            self._run()
        except JobStopped as stopped:
            self._end("Stopped", str(stopped), f"Training job ended: {stopped}")
        except AlgorithmFailed as failed:
            self._end("Failed", "Failed", "Training job failed", failure_reason=str(failed))
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is the job's failure reason
            log.exception("training job %s failed", self.name)
            self._end("Failed", "Failed", "Training job failed", failure_reason=f"ClientError: {exc}"[:1024])
        finally:
            with _running_lock:
                _running.pop(self.name, None)
                _observers.pop(self.name, None)

    def _run(self) -> None:
        job = self.job
        count = job["ResourceConfig"]["InstanceCount"]
        spot = job.get("EnableManagedSpotTraining", False)
        rehearsal = _spot_rehearsal() if spot else None
        stopping = job.get("StoppingCondition", {})
        max_runtime = stopping.get("MaxRuntimeInSeconds", 86400)
        max_wait = stopping.get("MaxWaitTimeInSeconds") if spot else None
        self.started = time.monotonic()
        self.billable = 0.0
        self.trained = 0.0  # seconds in Training, over all attempts
        self.report(training_start_time=datetime.now(timezone.utc))
        with tempfile.TemporaryDirectory(prefix=f"dogops-training-{self.name}-", ignore_cleanup_errors=True) as tmp:
            for attempt in range(1, 100):
                if attempt > 1:
                    self.report("InProgress", "Starting", "Launching requested ML instances (restarted after a "
                                "spot interruption)")
                attempt_started = time.monotonic()
                self.hosts = [Host(f"algo-{i + 1}", Path(tmp) / f"attempt-{attempt}" / f"algo-{i + 1}" / "opt" / "ml",
                                   f"{self.name}/algo-{i + 1}-{int(time.time())}") for i in range(count)]
                self._download()
                interrupt = rehearsal if attempt == 1 else None
                code = self._train(max_runtime, interrupt)
                self._sync_checkpoints()
                self.billable += time.monotonic() - attempt_started  # per instance, as AWS reports it
                if code == "interrupted":
                    self.report("InProgress", "Interrupted", "The spot instance was reclaimed: the job restarts "
                                "from its checkpoints when capacity is back")
                    time.sleep(float(os.environ.get("DOGOPS_SPOT_CAPACITY_WAIT_S", "1")))
                    if max_wait is not None and time.monotonic() - self.started > max_wait:
                        raise JobStopped("MaxWaitTimeExceeded")
                    continue
                if code != 0:
                    raise AlgorithmFailed(self._failure(code))
                upload_started = time.monotonic()
                artifacts = self._upload(Path(tmp) / "upload")
                self.billable += time.monotonic() - upload_started
                self._end("Completed", "Completed", "Training job completed", model_artifacts=artifacts)
                return
        raise RuntimeError("too many spot interruptions")

    def _end(self, status: str, secondary: str, message: str, **fields) -> None:
        self.logs.close()
        self.published.close()  # in CloudWatch before the job ends (the SDK's TrainingJobAnalytics reads them then)
        now = datetime.now(timezone.utc)
        times = {}
        if hasattr(self, "started"):
            times = {"training_end_time": now,
                     "training_time_in_seconds": max(1, math.ceil(time.monotonic() - self.started)),
                     "billable_time_in_seconds": max(1, math.ceil(self.billable))}
        metrics = [{"MetricName": k, "Value": v["value"], "Timestamp": v["at"]} for k, v in self.metrics.items()]
        self.report(status, secondary, message, final_metric_data_list=metrics or None, **times, **fields)

    # -- Downloading -------------------------------------------------------------------------------------------
    def _download(self) -> None:
        self.report("InProgress", "Downloading", "Downloading input data")
        job, first = self.job, self.hosts[0]
        modes = {}
        for channel in job.get("InputDataConfig", []):
            name, source = channel["ChannelName"], channel["DataSource"].get("S3DataSource")
            mode = channel.get("InputMode", job["AlgorithmSpecification"].get("TrainingInputMode", "File"))
            if source is None or source.get("S3DataType", "S3Prefix") != "S3Prefix" or mode == "Pipe":
                raise ValueError(f"channel {name}: only S3Prefix data in File or FastFile mode runs locally")
            count = download_prefix(self.s3, source["S3Uri"], first.base / "input" / "data" / name)
            log.info("job %s channel %s: %d files", self.name, name, count)
            modes[name] = {"TrainingInputMode": mode,
                           "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                           "RecordWrapperType": channel.get("RecordWrapperType", "None"),
                           **({"ContentType": channel["ContentType"]} if channel.get("ContentType") else {})}
        checkpoint = job.get("CheckpointConfig")
        self._script_mode(first.base / "code")
        for host in self.hosts:
            if host is not first and (first.base / "input" / "data").exists():
                shutil.copytree(first.base / "input" / "data", host.base / "input" / "data", copy_function=os.link)
            if host is not first and (first.base / "code").exists():
                shutil.copytree(first.base / "code", host.base / "code")
            if self.mode == "native" and self.scripted:
                private_python(host.base.parent / "venv")
            host.checkpoints.mkdir(parents=True, exist_ok=True)
            if checkpoint:
                if checkpoint.get("LocalPath", "/opt/ml/checkpoints").rstrip("/") != "/opt/ml/checkpoints":
                    raise ValueError("CheckpointConfig.LocalPath other than /opt/ml/checkpoints does not run locally")
                download_prefix(self.s3, checkpoint["S3Uri"], host.checkpoints)
            for sub in ("model", "output/data"):
                (host.base / sub).mkdir(parents=True, exist_ok=True)
            write_job_config(host.base, self.job.get("HyperParameters", {}), modes, resource_config(
                host.name, [h.name for h in self.hosts], self.job["ResourceConfig"]["InstanceType"]))
        if self.mode == "docker":  # SageMaker pulls the image before Training
            pull_missing(self.image)

    def _script_mode(self, code_dir: Path) -> None:
        """The user's code (``sagemaker_submit_directory``) into ``code_dir``; which image and torch run it."""
        spec = self.job["AlgorithmSpecification"]
        framework = pytorch_training(spec["TrainingImage"])
        self.program = script_mode.program(self.job)
        self.scripted = bool(self.program or spec.get("ContainerEntrypoint"))
        self.image = spec["TrainingImage"]
        if self.program:
            script_mode.fetch_source(self.s3, self.job, code_dir)
        if framework is None:
            return
        if not self.scripted:
            raise ValueError(f"{framework.uri} is AWS's PyTorch training container: it runs the script a job names "
                             "in the sagemaker_program hyperparameter (with sagemaker_submit_directory) or a "
                             "ContainerEntrypoint, and this job names neither")
        asked = f"PyTorch {framework.version} ({framework.processor}, {framework.python})" if framework.version \
            else "PyTorch (version by digest)"
        if self.mode == "docker":
            self.image = os.environ.get("DOGOPS_FRAMEWORK_TRAINING_IMAGE", "dogops-training:dev")
            runs = f"the image {self.image} (AWS's sagemaker-training toolkit) runs it"
        else:
            runs = f"torch {_torch_version()} of the stack's Python runs it natively"
        self.notes = [f"dogops: {spec['TrainingImage']} asks for {asked}; {runs}"]

    # -- Training ----------------------------------------------------------------------------------------------
    def _command(self, host: Host, port: int) -> tuple[list[str], dict]:
        spec = self.job["AlgorithmSpecification"]
        env = {"TRAINING_JOB_NAME": self.name, "TRAINING_JOB_ARN": self.job["TrainingJobArn"],
               **self.job.get("Environment", {})}
        if len(self.hosts) > 1:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(self.hosts)))
        args = spec.get("ContainerArguments") or ["train"]
        if self.mode == "native":
            return self._native(host, args, env)
        hosts = [f"--add-host={h.name}:127.0.0.1" for h in self.hosts] if self.scripted else []
        entrypoint = ["--entrypoint", spec["ContainerEntrypoint"][0]] if spec.get("ContainerEntrypoint") else []
        extra = spec.get("ContainerEntrypoint", [])[1:]
        flags = [item for k, v in env.items() for item in ("-e", f"{k}={v}")]
        return ["docker", "run", "--rm", "--name", self._container(host), "--network", "host", *flags,
                "-v", f"{host.base}:/opt/ml", *hosts, *entrypoint, self.image, *extra, *args], dict(os.environ)

    def _native(self, host: Host, args: list[str], env: dict) -> tuple[list[str], dict]:
        """A host's process in this Python: dogops' ``train`` (which runs the toolkit for a named program) or a
        ``ContainerEntrypoint`` with the tree at ``/opt/ml``; a script runs in the host's job-private venv."""
        spec = self.job["AlgorithmSpecification"]
        native = Path(sys.executable).parent / "train"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "AWS_", "DOGOPS_"))}
        if not self.scripted:
            return [str(native), *args], {**base, **env, "SAGEMAKER_BASE_DIR": str(host.base)}
        python = host.base.parent / "venv" / "bin" / "python"
        base["PATH"] = f"{python.parent}{os.pathsep}{base.get('PATH', os.defpath)}"
        if spec.get("ContainerEntrypoint"):  # as in the container: /opt/ml, no SAGEMAKER_BASE_DIR
            return script_mode.mapped(host.base, [*spec["ContainerEntrypoint"], *(spec.get("ContainerArguments") or [])]), \
                {**base, **env}
        # the toolkit waits until every host's name resolves, which here none does: SageMaker Studio's local
        # mode switch skips that wait (the hosts meet at MASTER_ADDR, loopback)
        return [str(python), str(native), *args], {**base, **env, "SAGEMAKER_BASE_DIR": str(host.base),
                                                   "SM_STUDIO_LOCAL_MODE": "true"}

    def _container(self, host: Host) -> str:
        return f"{self.name}-{host.name}"

    def _stop_asked(self) -> str | None:
        """``StopTrainingJob`` on the emulator, seen by a runner outside it (at most once a second)."""
        if not self.remote or time.monotonic() < self.stop_checked_at + 1:
            return self.stop_requested
        self.stop_checked_at = time.monotonic()
        if self.sm.describe_training_job(TrainingJobName=self.name)["TrainingJobStatus"] == "Stopping":
            self.stop_requested = "Stopped"
        return self.stop_requested

    def _train(self, max_runtime: float, interrupt: tuple[str, float] | None) -> int | str:
        """Run the hosts to their end: the exit code of the first failing host (else 0), or "interrupted"."""
        self.report("InProgress", "Training", "Training image download completed. Training in progress.")
        for note in self.notes:
            self.logs.write(LOG_GROUP, self.hosts[0].stream, note)
        port = free_port()
        interrupted = threading.Event()
        readers = []
        for host in self.hosts:
            argv, env = self._command(host, port)
            host.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
            readers.append(threading.Thread(target=self._read, args=(host, interrupt, interrupted), daemon=True))
            readers[-1].start()
        began = time.monotonic()
        sent, killed_at = None, None
        while any(h.proc.poll() is None for h in self.hosts):
            time.sleep(0.2)
            reason = self._stop_asked()
            if reason is None and self.trained + time.monotonic() - began > max_runtime:
                reason = "MaxRuntimeExceeded"
            if reason is None and interrupt and interrupt[0] == "after" and time.monotonic() - began >= interrupt[1]:
                interrupted.set()
            if sent is None and (reason or interrupted.is_set()):
                sent = reason or "interrupted"
                log.info("job %s: SIGTERM to its hosts (%s)", self.name, sent)
                self.signal_hosts(signal.SIGTERM)
                killed_at = time.monotonic() + KILL_AFTER_S
            if killed_at and time.monotonic() > killed_at:
                self.signal_hosts(signal.SIGKILL)
                killed_at = None
        for reader in readers:
            reader.join(timeout=10)
        self.trained += time.monotonic() - began
        self.logs.flush()
        codes = [h.proc.returncode for h in self.hosts]
        if sent in ("Stopped", "MaxRuntimeExceeded"):
            self._sync_checkpoints()
            raise JobStopped(sent)
        if sent == "interrupted" and any(codes):
            return "interrupted"
        return next((c for c in codes if c), 0)

    def _read(self, host: Host, interrupt, interrupted: threading.Event) -> None:
        reader = MetricReader(self.job["AlgorithmSpecification"].get("MetricDefinitions", []))
        epoch = re.compile(rf"\bepoch={int(interrupt[1])}\b") if interrupt and interrupt[0] == "epoch" else None
        for line in host.proc.stdout:
            line = line.rstrip("\n")
            if not line.strip():  # CloudWatch Logs takes no empty event (Docker's awslogs driver skips them)
                continue
            now = datetime.now(timezone.utc)
            self.logs.write(LOG_GROUP, host.stream, line, int(now.timestamp() * 1000))
            found = reader.read(line)
            observer = _observers.get(self.name)
            for name, value in found.items():
                self.metrics[name] = {"value": value, "at": now}
                self.published.record(LOG_GROUP, name, value, dimensions=(("TrainingJobName", self.name),),
                                      timestamp=now.timestamp())
                if observer is not None:
                    observer(name, value)
            if found:
                self._sync_checkpoints()  # an epoch ended: its checkpoint is written
            if epoch is not None and epoch.search(line) and not interrupted.is_set():
                interrupted.set()
                self.signal_hosts(signal.SIGTERM)  # at once: the next epoch may be short

    def signal_hosts(self, sig: int) -> None:
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                if self.mode == "docker":  # to the container (the docker client may be gone by SIGKILL)
                    docker("kill", "--signal", signal.Signals(sig).name, self._container(host), check=False)
                    continue
                try:
                    os.killpg(host.proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _sync_checkpoints(self) -> None:
        """New and changed local checkpoints to ``CheckpointConfig.S3Uri``; a deleted one is deleted there."""
        checkpoint = self.job.get("CheckpointConfig")
        if not checkpoint:
            return
        bucket, prefix = parse_s3_uri(checkpoint["S3Uri"])
        with self.lock:
            for host in self.hosts:
                now = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in host.checkpoints.rglob("*")
                       if p.is_file() and not p.name.endswith(".tmp")}
                for path, stamp in now.items():
                    if host.synced.get(path) != stamp:
                        key = "/".join(filter(None, [prefix, path.relative_to(host.checkpoints).as_posix()]))
                        self.s3.upload_file(str(path), bucket, key)
                        host.synced[path] = stamp
                for path in [p for p in host.synced if p not in now]:
                    key = "/".join(filter(None, [prefix, path.relative_to(host.checkpoints).as_posix()]))
                    self.s3.delete_object(Bucket=bucket, Key=key)
                    del host.synced[path]

    def _failure(self, code: int) -> str:
        for host in self.hosts:
            failure = host.base / "output" / "failure"
            if failure.exists() and failure.read_text(encoding="utf-8").strip():
                return f"AlgorithmError: {failure.read_text(encoding='utf-8').strip()}"[:1024]
        return f"AlgorithmError: the training exited with code {code} and wrote no output/failure"

    # -- Uploading ---------------------------------------------------------------------------------------------
    def _upload(self, folder: Path) -> dict:
        self.report("InProgress", "Uploading", "Uploading generated training model")
        merged = folder / "model"
        merged.mkdir(parents=True)
        for host in self.hosts:  # as SageMaker merges the hosts' /opt/ml/model, a later name clash overwriting
            shutil.copytree(host.base / "model", merged, dirs_exist_ok=True)
        bucket, prefix = parse_s3_uri(self.job["OutputDataConfig"]["S3OutputPath"])
        key = "/".join(filter(None, [prefix, self.name, "output", "model.tar.gz"]))
        pack(merged, folder / "model.tar.gz")
        self.s3.upload_file(str(folder / "model.tar.gz"), bucket, key)
        data = self.hosts[0].base / "output" / "data"
        if any(data.iterdir()):
            pack(data, folder / "output.tar.gz")
            self.s3.upload_file(str(folder / "output.tar.gz"), bucket, key.replace("model.tar.gz", "output.tar.gz"))
        return {"S3ModelArtifacts": f"s3://{bucket}/{key}"}
