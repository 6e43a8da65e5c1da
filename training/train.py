"""``train``: one program for SageMaker training jobs, tuning trials, EC2 and the CLI.

Usage::

    train                      # SageMaker contract: /opt/ml (or $SAGEMAKER_BASE_DIR)
    train train                # the same, as `docker run IMAGE train` passes it
    train --data DIR [--model-dir DIR] [--epochs 5 --learning_rate 0.01 ...]

Under the SageMaker contract the hyperparameters come from
``input/config/hyperparameters.json`` (string values), the data from the
``training`` channel, the model goes to ``model/``, checkpoints to
``checkpoints/``, and a failure's reason to ``output/failure`` with a
non-zero exit. Several hosts (``SM_HOSTS``/``SM_CURRENT_HOST`` or
``resourceconfig.json``) train data-parallel with ``torch.distributed``.
SIGTERM saves a checkpoint and exits 143; the next run resumes from it.
"""

import argparse
import datetime
import hashlib
import logging
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from . import hyperparameters as hps
from .artifact import write_artifact
from .dataset import open_dataset
from .features import Interrupted, cache_key, dataset_features, default_cache_dir, preload
from .loop import train_head
from .model import SPECS, BreedClassifier, build_backbone
from .preprocess import image_transform
from .sagemaker_env import Hosts, SageMakerPaths, hosts_from_env

log = logging.getLogger("training")

EXIT_INTERRUPTED = 128 + signal.SIGTERM


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between batches."""

    def __init__(self):
        self.requested = False

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.warning("received %s: saving a checkpoint and stopping", signal.Signals(signum).name)
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def _init_distributed(hosts: Hosts) -> None:
    """Join the process group: MASTER_ADDR/MASTER_PORT, else the first host and port 7777."""
    address = os.environ.get("MASTER_ADDR", hosts.hosts[0])
    port = os.environ.get("MASTER_PORT", os.environ.get("SM_MASTER_PORT", "7777"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    log.info("host %s joining %d-host %s group at %s:%s", hosts.current, hosts.world_size, backend, address, port)
    dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=hosts.rank,
                            world_size=hosts.world_size, timeout=datetime.timedelta(minutes=15))


def run(data_dir: Path, model_dir: Path, hp: hps.Hyperparameters, checkpoint_dir: Path | None = None,
        cache_dir: Path | None = None, hosts: Hosts = Hosts(), should_stop=lambda: False) -> dict:
    """Train on ``data_dir`` and write the model directory; return the final metrics."""
    dataset = open_dataset(data_dir)
    counts = {name: len(split.paths) for name, split in dataset.splits.items()}
    log.info("data %s: %d classes, images %s", data_dir, len(dataset.classes), counts)
    log.info("hyperparameters %s", hp.to_strings())
    if hosts.world_size > 1:
        _init_distributed(hosts)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(hp.seed)
    backbone, weights_id = build_backbone(hp.backbone, hp.image_size, hp.pretrained, hp.weights)
    backbone.to(device)
    transform = image_transform(hp.backbone, hp.image_size)
    data_hash = dataset.content_hash()
    key = cache_key(backbone=hp.backbone, weights=weights_id, image_size=hp.image_size,
                    transform=repr(transform), data=data_hash)

    def compute() -> dict:
        return dataset_features(dataset, backbone, transform, hp.image_size, key,
                                cache_dir if hp.feature_cache else None, device, should_stop)

    first = compute()  # also tells how many images were unreadable
    skipped = sum(len(split["skipped"]) for split in first.values())
    unused = [first]

    def features() -> dict:
        """The cached features every time, or without the cache a fresh pass (the first one already done)."""
        if hp.feature_cache:
            return first
        return unused.pop() if unused else compute()

    meta = {"hyperparameters": {k: v for k, v in hp.as_dict().items() if k != "feature_cache"},
            "data": data_hash, "classes": dataset.classes, "hosts": hosts.hosts}
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / ("checkpoint.pt" if hosts.world_size == 1
                                             else f"checkpoint-{hosts.current}.pt")
    head, result = train_head(features, len(dataset.classes), SPECS[hp.backbone].feature_dim, hp,
                              checkpoint, meta, hosts.rank, hosts.world_size, should_stop)
    result.update(skipped_images=skipped, data_sha256=data_hash, hyperparameters=hp.to_strings())
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in head.state_dict().values())).hexdigest()
    log.info("host=%s result_digest=%s", hosts.current, digest[:16])
    if hosts.rank == 0:
        write_artifact(model_dir, BreedClassifier(backbone.cpu(), head), list(dataset.classes),
                       hp.backbone, hp.image_size, hp.hidden_units, result)
        log.info("summary: %d epochs, best epoch %d, test accuracy %.4f, %d unreadable images skipped; "
                 "model written to %s", result["epochs_run"], result["best_epoch"], result["test_accuracy"],
                 skipped, model_dir)
    if hosts.world_size > 1:
        dist.destroy_process_group()
    return result


def _run_sagemaker(stop: StopFlag) -> int:
    paths = SageMakerPaths.from_env()
    try:
        hp = hps.from_strings(paths.hyperparameters())
        run(paths.channel("training"), paths.model_dir, hp, paths.checkpoint_dir,
            Path(os.environ["DOGOPS_CACHE_DIR"]) if os.environ.get("DOGOPS_CACHE_DIR") else None,
            paths.hosts(), stop)
    except Interrupted as exc:
        log.warning("%s", exc)
        return EXIT_INTERRUPTED
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("training failed: %s", reason)
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(reason[:1024], encoding="utf-8")
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path,
                        help="data directory in the dogImages layout (train/ valid/ test/)")
    parser.add_argument("--model-dir", type=Path, default=Path("TrainedModels"),
                        help="where the model directory is written (default: TrainedModels)")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"),
                        help="per-epoch checkpoints; a rerun resumes from them (default: checkpoints)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="feature cache (default: $DOGOPS_CACHE_DIR or ~/.cache/dogops/features)")
    hps.add_arguments(parser)
    return parser


def _run_cli(argv: list[str], stop: StopFlag) -> int:
    args = _parser().parse_args(argv)
    try:
        hp = hps.from_namespace(args)
        run(args.data, args.model_dir, hp, args.checkpoint_dir, args.cache_dir or default_cache_dir(),
            hosts_from_env(), stop)
    except Interrupted as exc:
        log.warning("%s", exc)
        return EXIT_INTERRUPTED
    except Exception as exc:
        log.error("training failed: %s: %s", type(exc).__name__, exc)
        log.debug("details", exc_info=True)
        return 1
    return 0


def warm(env: dict[str, str]) -> None:
    """Ready a process that forks ``train`` runs (``dogops tune``'s warm worker): having imported this
    module it has torch and the rest; this reads the features cached in ``$DOGOPS_CACHE_DIR`` into memory.
    It runs no torch computation, whose OpenMP threads would not survive the fork."""
    if env.get("DOGOPS_CACHE_DIR"):
        preload(Path(env["DOGOPS_CACHE_DIR"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``train`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = StopFlag().install()
    return _run_sagemaker(stop) if not argv else _run_cli(argv, stop)


if __name__ == "__main__":
    sys.exit(main())
