"""What every training run of a stage shares, on SageMaker (``train``, ``tune``) or EC2 (``ec2``): its settings
from ``promote.yaml``, where it reads and writes, and the record a completed run leaves.

Settings come from ``promote.yaml`` (``training:``, overridable per stage under ``stages.<stage>.training``;
``{stage}`` in a prefix is the stage's name, so each stage writes, and its roles may write, only its own
prefixes)::

    training:
      data: s3://BUCKET/data                 # the "training" channel (dogImages layout)
      output: s3://BUCKET/{stage}/training   # model.tar.gz at <output>/<job>/output/model.tar.gz
      checkpoints: s3://BUCKET/{stage}/checkpoints  # default: <output>-checkpoints; per job: .../<job>
      instance_type: ml.m5.xlarge
      volume_gb: 30
      max_run_s: 86400
      max_wait_s: 172800                     # spot only: waiting for capacity plus running
      hyperparameters: {epochs: 10, ...}     # sent as strings, checked against the training code's names

A completed run is recorded as the stage's candidate model (``.dogops/candidate.json``, next to ``best.json``;
one file per job under ``.dogops/candidates/``).
"""

import dataclasses
import json
from pathlib import Path

import yaml

from training import atomic
from training.hyperparameters import from_strings

from .config import CONFIG, Stage

CANDIDATE = Path(".dogops") / "candidate.json"
PREFIXES = ("data", "output", "checkpoints")
DEFAULTS = {"instance_type": "ml.m5.xlarge", "volume_gb": 30, "max_run_s": 86400, "max_wait_s": 172800,
            "hyperparameters": {}}


def settings(stage: str, path: Path = CONFIG) -> dict:
    """``training:`` of ``promote.yaml`` with the stage's own ``training:`` over it, over the defaults; ``{stage}``
    in the S3 prefixes replaced by ``stage``."""
    config = yaml.safe_load(Path(path).read_text())
    merged = {**DEFAULTS, **(config.get("training") or {}),
              **((config.get("stages", {}).get(stage) or {}).get("training") or {})}
    merged.update({k: merged[k].replace("{stage}", stage) for k in PREFIXES if merged.get(k)})
    merged["hyperparameters"] = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
                                 for k, v in (merged.get("hyperparameters") or {}).items()}
    from_strings(merged["hyperparameters"])  # an unknown name or a bad value fails here, not in the job
    return merged


def run_limits(conf: dict, spot: bool, instances: int = 1, interruptions: int | None = None) -> dict:
    """A run's values that ``limits`` bounds (``None``: not part of this run), named as the user sets them."""
    return {"max_run_s": ("training.max_run_s", conf["max_run_s"]),
            "max_wait_s": ("training.max_wait_s", conf["max_wait_s"] if spot else None),
            "training_instances": ("--instances", instances),
            "ec2_max_interruptions": ("--max-interruptions", interruptions)}


@dataclasses.dataclass(frozen=True)
class Locations:
    """Where training reads and writes: the data prefix, the output path, the checkpoints' base."""

    data: str
    output: str
    checkpoints: str


def locations(conf: dict, data: str | None = None, output: str | None = None) -> Locations:
    """``data``/``output`` (``--data``/``--output``) over ``conf``'s; checkpoints default to <output>-checkpoints."""
    data, output = data or conf.get("data"), (output or conf.get("output") or "").rstrip("/")
    if not data or not output:
        raise SystemExit("no training data or output prefix: pass --data/--output or set training.data and "
                         "training.output in promote.yaml")
    return Locations(data, output, (conf.get("checkpoints") or f"{output}-checkpoints").rstrip("/"))


def write_record(record: dict, path: Path, history: str, name: str) -> None:
    """``record`` as JSON at ``path`` and, kept, at ``<path's folder>/<history>/<name>.json``, each written
    atomically (``training.atomic``: temporary name, fsync, rename)."""
    path = Path(path)
    for target in (path.parent / history / f"{name}.json", path):
        atomic.write_text(target, json.dumps(record, indent=2) + "\n")  # a crash leaves the old record or the new


def spot_saving(job: dict) -> float | None:
    """SageMaker's formula: ``(1 - BillableTimeInSeconds / TrainingTimeInSeconds) * 100``."""
    billable, total = job.get("BillableTimeInSeconds"), job.get("TrainingTimeInSeconds")
    if not job.get("EnableManagedSpotTraining") or not billable or not total:
        return None
    return (1 - billable / total) * 100


def record_candidate(job: dict, stage: Stage, path: Path = CANDIDATE) -> dict:
    """The completed job (as ``DescribeTrainingJob`` describes it) as the stage's candidate for promotion (and
    under ``candidates/<job>.json``)."""
    record = {"training_job": job["TrainingJobName"], "stage": stage.name,
              "model_data_url": job["ModelArtifacts"]["S3ModelArtifacts"],
              "metrics": {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
              "hyperparameters": job.get("HyperParameters", {}), "image": job["AlgorithmSpecification"]["TrainingImage"],
              "data": job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
              "instances": job["ResourceConfig"]["InstanceCount"],
              "instance_type": job["ResourceConfig"]["InstanceType"],
              "spot": bool(job.get("EnableManagedSpotTraining")),
              "billable_seconds": job.get("BillableTimeInSeconds"), "training_seconds": job.get("TrainingTimeInSeconds"),
              "spot_saving_percent": spot_saving(job)}
    write_record(record, path, "candidates", record["training_job"])
    return record
