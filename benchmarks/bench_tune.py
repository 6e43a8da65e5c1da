"""`make bench-tune`: wall time of one tuning job several ways, as ratios.

8 trials of `train` on the same generated data: with the feature cache and without (the backbone runs in
every epoch of every trial), each with warm trials (forked from a worker that has imported torch and loaded
the cached features: `dogops tune`'s default) and cold ones (a fresh `train` process per trial, `--cold`),
and with the cache, warm, 2 trials in parallel. Besides wall time: CPU time (this process and every process
it waited for, trials included), which a busy machine disturbs less, and each trial's start-up (from its
start to its first log line: process start, imports, reading the data's layout; median). With ``--repeat N``
the runs go N times, in alternating order, and each way's fastest counts.

Usage: python benchmarks/bench_tune.py [--trials 8] [--epochs 6] [--repeat 1]
"""

import argparse
import datetime
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

from dogops.synthetic import generate
from dogops.tuning.local import run_tuning_job
from dogops.tuning.spec import parse_spec

RUNS = (("cache, warm", 1, True, True), ("cache, cold", 1, True, False), ("no cache, warm", 1, False, True),
        ("no cache, cold", 1, False, False), ("cache, warm, 2 parallel", 2, True, True))


def spec(trials: int, parallel: int, epochs: int, cache: bool):
    return parse_spec({
        "Strategy": "Random", "RandomSeed": 0,
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "test_loss"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}]},
        "StaticHyperParameters": {"epochs": str(epochs), "patience": "0", "image_size": "64",
                                  "backbone": "efficientnet_lite0", "feature_cache": str(cache).lower()}})


def cpu_seconds() -> float:
    """CPU time of this process and of every process it has waited for (the warm worker reaps its trials)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def startup_seconds(study, job_dir: Path) -> float:
    """Median time from a trial's start to the first line its `train` logged."""
    delays = []
    for trial in study.get_trials(deepcopy=False):
        first = (job_dir / "trials" / trial.user_attrs["name"] / "train.log").read_text().split(" INFO ")[0]
        delays.append((datetime.datetime.strptime(first, "%Y-%m-%d %H:%M:%S,%f")
                       - trial.datetime_start).total_seconds())
    return statistics.median(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    wall, cpu = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", classes=10, per_class=30, size=64)
        for repeat in range(args.repeat):
            for label, parallel, cache, warm in RUNS[::-1] if repeat % 2 else RUNS:
                job_dir = tmp / f"{label.replace(', ', '-').replace(' ', '-')}-{repeat}"
                started, used = time.perf_counter(), cpu_seconds()
                study = run_tuning_job(spec(args.trials, parallel, args.epochs, cache), tmp / "data", job_dir,
                                       warm=warm)
                took, busy = time.perf_counter() - started, cpu_seconds() - used
                wall[label], cpu[label] = min(wall.get(label, took), took), min(cpu.get(label, busy), busy)
                print(f"{label:<24} {took:7.1f} s, CPU {busy:7.1f} s, trial start-up "
                      f"{startup_seconds(study, job_dir):5.2f} s", flush=True)
    print(f"{args.trials} trials x {args.epochs} epochs, 10 classes x 30 images, 64 px, efficientnet_lite0:")

    def ratio(slow: str, fast: str) -> str:
        return f"{wall[slow] / wall[fast]:.1f}x (CPU {cpu[slow] / cpu[fast]:.1f}x)"

    print(f"feature cache speed-up, as `dogops tune` runs (warm): {ratio('no cache, warm', 'cache, warm')}; "
          f"against cold trials without the cache (before): {ratio('no cache, cold', 'cache, warm')}; "
          f"with cold trials: {ratio('no cache, cold', 'cache, cold')}")
    print(f"warm vs cold trials with the cache: {ratio('cache, cold', 'cache, warm')}; "
          f"2-parallel vs sequential: {wall['cache, warm'] / wall['cache, warm, 2 parallel']:.2f}x")


if __name__ == "__main__":
    main()
