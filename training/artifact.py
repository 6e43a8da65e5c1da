"""The model directory: what ``model.tar.gz`` holds and the serving image loads.

    model.pth          state dict of the whole classifier (backbone + head)
    classes.json       class folder names in output order, e.g. "001.Affenpinscher"
    model_config.json  backbone, image size, head width, normalisation
    metrics.json       final metrics, per-epoch history, hyperparameters, data hash
    manifest.json      sha256 and size of every file above

Each file is written atomically (``atomic``); ``manifest.json`` goes first when a directory is rewritten and comes
back last, so a directory a crash left half-written has no manifest, or one its files fail: never trusted.
"""

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic

if TYPE_CHECKING:  # torch only where weights are written or loaded: checking a directory needs none (promote)
    from .model import BreedClassifier

FORMAT = "dogops-model/1"
WEIGHTS, CLASSES, CONFIG, METRICS, MANIFEST = (
    "model.pth", "classes.json", "model_config.json", "metrics.json", "manifest.json")


class ArtifactError(ValueError):
    """A model directory is incomplete or fails its manifest check."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value) -> None:
    atomic.write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_artifact(model_dir: Path, model: "BreedClassifier", classes: list[str], backbone: str,
                   image_size: int, hidden_units: int, metrics: dict) -> dict:
    """Write the model directory and return its manifest."""
    import torch

    from .model import SPECS

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if (model_dir / MANIFEST).exists():
        (model_dir / MANIFEST).unlink()
        atomic.fsync_dir(model_dir)
    with atomic.replacing(model_dir / WEIGHTS) as out:
        torch.save(model.state_dict(), out)
    _write_json(model_dir / CLASSES, list(classes))
    spec = SPECS[backbone]
    _write_json(model_dir / CONFIG, {
        "format": FORMAT, "backbone": backbone, "image_size": image_size, "hidden_units": hidden_units,
        "num_classes": len(classes), "mean": list(spec.mean), "std": list(spec.std),
        "output": "log_softmax"})
    _write_json(model_dir / METRICS, metrics)
    manifest = {"format": FORMAT, "files": {
        name: {"sha256": _sha256(model_dir / name), "bytes": (model_dir / name).stat().st_size}
        for name in (WEIGHTS, CLASSES, CONFIG, METRICS)}}
    _write_json(model_dir / MANIFEST, manifest)
    return manifest


def verify_artifact(model_dir: Path) -> dict:
    """Check every file against ``manifest.json``; return the model config or raise ArtifactError."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST
    if not manifest_path.exists():
        raise ArtifactError(f"no {MANIFEST} in {model_dir}: not a dogops model directory")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        path = model_dir / name
        if not path.exists():
            raise ArtifactError(f"{path} is listed in the manifest but missing")
        if _sha256(path) != entry["sha256"]:
            raise ArtifactError(f"{path} does not match its sha256 in {MANIFEST} (corrupt or modified)")
    return json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))


def load_artifact(model_dir: Path) -> tuple["BreedClassifier", list[str], dict]:
    """Verify and load a model directory: the classifier in eval mode, class names, config."""
    import torch

    from .model import build_classifier

    model_dir = Path(model_dir)
    config = verify_artifact(model_dir)
    classes = json.loads((model_dir / CLASSES).read_text(encoding="utf-8"))
    model = build_classifier(config["backbone"], config["image_size"], config["hidden_units"], len(classes))
    model.load_state_dict(torch.load(model_dir / WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval(), classes, config
