"""`make bench-tune`: wall time of one tuning job three ways, as ratios.

8 trials of `train` on the same generated data: with the feature cache and
one trial at a time, without the cache (the backbone runs in every epoch of
every trial), and with the cache and 2 trials in parallel.

Usage: python benchmarks/bench_tune.py [--trials 8] [--epochs 6]
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

from dogops.synthetic import generate
from dogops.tuning.local import run_tuning_job
from dogops.tuning.spec import parse_spec


def spec(trials: int, parallel: int, epochs: int, cache: bool):
    return parse_spec({
        "Strategy": "Random", "RandomSeed": 0,
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]},
        "StaticHyperParameters": {"epochs": str(epochs), "patience": "0", "image_size": "64",
                                  "backbone": "efficientnet_lite0", "feature_cache": str(cache).lower()}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", classes=10, per_class=30, size=64)
        for label, parallel, cache in (("cache, sequential", 1, True), ("no cache, sequential", 1, False),
                                       ("cache, 2 parallel", 2, True)):
            started = time.perf_counter()
            run_tuning_job(spec(args.trials, parallel, args.epochs, cache), tmp / "data",
                           tmp / label.replace(", ", "-").replace(" ", "-"))
            times[label] = time.perf_counter() - started
            print(f"{label:<22} {times[label]:6.1f} s", flush=True)
    print(f"{args.trials} trials x {args.epochs} epochs, 10 classes x 30 images, 64 px, efficientnet_lite0:")
    print(f"feature cache speed-up: {times['no cache, sequential'] / times['cache, sequential']:.1f}x; "
          f"2-parallel vs sequential: {times['cache, sequential'] / times['cache, 2 parallel']:.2f}x")


if __name__ == "__main__":
    main()
