"""Backbone features, computed once per data set and transform and cached on disk.

With a frozen backbone every epoch and every tuning trial only trains the
head, so the backbone's output for each image never changes. The cache key
covers everything that could change it: backbone, weights, transform, and the
data's content hash. Files are written atomically, so concurrent trials can
share one cache directory.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from . import atomic
from .dataset import Dataset, Split, load_rgb
from .progress import progress

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_PRELOADED: dict[tuple, dict] = {}  # a cache file's identity (see _identity) -> its features, from preload()


class Interrupted(Exception):
    """A stop was requested (SIGTERM) while work was in progress."""


def default_cache_dir() -> Path:
    """``$DOGOPS_CACHE_DIR``, else ``~/.cache/dogops/features``."""
    if os.environ.get("DOGOPS_CACHE_DIR"):
        return Path(os.environ["DOGOPS_CACHE_DIR"])
    return Path.home() / ".cache" / "dogops" / "features"


def cache_key(**parts) -> str:
    """A stable key from the things that determine the features."""
    return hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()


def _identity(path: Path) -> tuple:
    """What tells one cache file from another, and from itself replaced: device, inode, size, mtime."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def preload(cache_dir: Path) -> None:
    """Read every feature file in ``cache_dir`` into memory, where :func:`dataset_features` finds it.

    A warm worker does this before forking trials, so each finds the features loaded. Loading runs no
    torch computation (which would start OpenMP threads that do not survive a fork). A file that does not
    load is left for :func:`dataset_features` to report.
    """
    loaded = {}
    for path in sorted(Path(cache_dir).glob("*.pt")):
        try:
            identity = _identity(path)
            loaded[identity] = _PRELOADED.get(identity) or torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torn, foreign or gone: the trial reads it itself
            continue
    _PRELOADED.clear()
    _PRELOADED.update(loaded)


def _load(path: Path) -> dict:
    """A cache file's features: from memory when :func:`preload` read this very file, else from disk."""
    preloaded = _PRELOADED.get(_identity(path))
    return preloaded if preloaded is not None else torch.load(path, map_location="cpu", weights_only=True)


@torch.inference_mode()
def extract_split(backbone: torch.nn.Module, split: Split, transform: Callable, image_size: int,
                  device: torch.device | None = None, should_stop: Callable[[], bool] = lambda: False,
                  batch_size: int = 32) -> dict:
    """Run the backbone over one split; unreadable images are skipped and listed."""
    features, labels, skipped = [], [], []
    batch, batch_labels = [], []

    def flush():
        if batch:
            features.append(backbone(torch.stack(batch).to(device)).cpu())
            labels.extend(batch_labels)
            batch.clear()
            batch_labels.clear()

    for path, label in progress(list(zip(split.paths, split.labels)), f"features {split.name}"):
        if should_stop():
            raise Interrupted(f"stopped while computing {split.name} features")
        try:
            with open(path, "rb") as f:
                image = load_rgb(f, image_size)
                image.load()
            batch.append(transform(image))
            batch_labels.append(label)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
            skipped.append(str(path))
            continue
        if len(batch) == batch_size:
            flush()
    flush()
    if not labels:
        raise ValueError(f"no readable images in split {split.name} ({len(skipped)} skipped)")
    return {"features": torch.cat(features), "labels": torch.tensor(labels), "skipped": skipped}


def dataset_features(dataset: Dataset, backbone: torch.nn.Module, transform: Callable, image_size: int,
                     key: str, cache_dir: Path | None, device: torch.device | None = None,
                     should_stop: Callable[[], bool] = lambda: False) -> dict[str, dict]:
    """Features of every split: from the cache when ``cache_dir`` holds ``key``, else computed."""
    path = cache_dir / f"{key}.pt" if cache_dir else None
    if path and path.exists():
        try:
            cached = _load(path)
            log.info("feature cache hit: %s", path)
            return cached
        except Exception as exc:  # a torn or foreign file: recompute and replace it
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
    result = {name: extract_split(backbone, split, transform, image_size, device, should_stop)
              for name, split in dataset.splits.items()}
    if path:
        with atomic.replacing(path) as out:
            torch.save(result, out)
        log.info("feature cache written: %s", path)
    return result
