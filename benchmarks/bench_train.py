"""`make bench-train`: where a training run's time goes, as ratios measured side by side.

1. Head training throughput: the `train` loop (validation each epoch, early
   stopping, metric lines, with and without per-epoch checkpoints) against a
   bare PyTorch loop over the same feature tensors, in images per second.
2. Trial time with the feature cache (warm, as every trial after the first)
   against without it (the backbone runs every epoch), for the same run.

Usage: python benchmarks/bench_train.py [--epochs 8] [--classes 10] [--per-class 30] [--size 96]
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from dogops.synthetic import generate
from training.hyperparameters import Hyperparameters
from training.loop import train_head
from training.model import SPECS, build_head
from training.train import run


def bare_loop(x, y, hp: Hyperparameters, num_classes: int) -> None:
    """The plainest head training loop over the same tensors: the yardstick."""
    torch.manual_seed(hp.seed)
    head = build_head(x.shape[1], hp.hidden_units, num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=hp.learning_rate)
    for _ in range(hp.epochs):
        for idx in torch.randperm(len(y)).split(hp.batch_size):
            loss = nn.functional.nll_loss(torch.log_softmax(head(x[idx]), dim=1), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", args.classes, args.per_class, args.size)
        hp = Hyperparameters(backbone="efficientnet_lite0", image_size=args.size, epochs=args.epochs, patience=0,
                             batch_size=32, learning_rate=0.003)

        # 2. Whole trials, with the warm feature cache and without any cache.
        run(tmp / "data", tmp / "warmup", hp, None, tmp / "cache")  # fills the cache, as a first trial would
        with_cache = timed(lambda: run(tmp / "data", tmp / "m1", hp, None, tmp / "cache"))
        no_cache_hp = Hyperparameters(**{**hp.as_dict(), "feature_cache": False})
        without_cache = timed(lambda: run(tmp / "data", tmp / "m2", no_cache_hp, None, tmp / "cache"), repeat=1)

        # 1. Head throughput over the cached tensors, ours against the bare loop.
        cached = torch.load(next((tmp / "cache").glob("*.pt")), weights_only=True)
        x, y = cached["train"]["features"], cached["train"]["labels"]
        images = len(y) * hp.epochs
        def ours(checkpoints: bool) -> float:
            return timed(lambda: train_head(lambda: cached, args.classes, SPECS[hp.backbone].feature_dim, hp,
                                            tmp / "ck" / f"{time.monotonic_ns()}.pt" if checkpoints else None, {}))

        with_checkpoints, without_checkpoints = ours(True), ours(False)
        bare = timed(lambda: bare_loop(x, y, hp, args.classes))

    print(f"data: {args.classes} classes x {args.per_class} train images, {args.size}px, "
          f"{hp.backbone}, {hp.epochs} epochs, {torch.get_num_threads()} torch threads")
    print(f"head training, images/s: bare PyTorch loop {images / bare:,.0f}; train loop "
          f"{images / without_checkpoints:,.0f} ({bare / without_checkpoints:.2f}x the bare loop's rate, "
          f"with per-epoch validation), {images / with_checkpoints:,.0f} with per-epoch checkpoints "
          f"({bare / with_checkpoints:.2f}x)")
    print(f"trial time: with feature cache {with_cache:.2f} s, without {without_cache:.2f} s, "
          f"speed-up {without_cache / with_cache:.1f}x")


if __name__ == "__main__":
    main()
