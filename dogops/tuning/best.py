"""The best trial's model: packed as ``model.tar.gz``, uploaded, and recorded.

The record (``best.json`` in the job folder, and ``.dogops/best.json`` as the
project's current best) names the tuning job and trial, where the model is
(``s3://...`` when uploaded), its metrics and hyperparameters, the data hash
and the training image, so ``dogops deploy`` deploys the best model, never a
hard-coded trial.
"""

import json
import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from training import atomic
from training.archive import pack, parse_s3_uri

log = logging.getLogger(__name__)

CURRENT = Path(".dogops") / "best.json"


def record_best(study: optuna.Study, objective: str, job_dir: Path, output: str | None, image: str,
                current: Path = CURRENT) -> dict:
    """Pack, upload (when ``output`` is an s3:// prefix) and record the best completed trial."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise RuntimeError("no trial completed: there is no best model to record")
    best = study.best_trial
    name = best.user_attrs["name"]
    model_dir = job_dir / "trials" / name / "model"
    archive = pack(model_dir, job_dir / "model.tar.gz")
    location = str(archive.resolve())
    if output:
        import boto3

        bucket, prefix = parse_s3_uri(output)
        key = "/".join(filter(None, [prefix, job_dir.name, name, "output", "model.tar.gz"]))
        boto3.client("s3").upload_file(str(archive), bucket, key)
        location = f"s3://{bucket}/{key}"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    record = {"tuning_job": job_dir.name, "trial": name, "model_data_url": location,
              "objective": {"name": objective, "value": best.value},
              "metrics": {k: metrics[k] for k in ("test_loss", "test_accuracy", "valid_loss", "valid_accuracy")},
              "hyperparameters": best.user_attrs["hyperparameters"], "data_sha256": metrics["data_sha256"],
              "image": image}
    for path in (job_dir / "best.json", current):
        atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    log.info("best trial %s: %s; model %s; recorded in %s", name, record["metrics"], location, current)
    return record


def load_best(path: Path = CURRENT) -> dict:
    """The current best record, or a clear error saying how to make one."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no best model recorded at {path}: run `dogops tune` first")
    return json.loads(Path(path).read_text())
