"""What promotion may ask AWS for at most (``promote.yaml``'s ``limits:``), checked before anything touches AWS.

A stage's endpoint instances (autoscaling max) and Lambda concurrency, a training job's instance count, maximum
runtime and spot wait, a tuning job's trials and trials at once, EC2 spot relaunches and a stage's time to live
each have a limit; a value above it is refused with the value, the limit and how to raise it. The defaults below
apply where ``promote.yaml`` leaves a limit out; raising one is an edit of ``promote.yaml`` (reviewed like any
other), not a flag a command line can carry by accident.
"""

from pathlib import Path

import yaml

DEFAULTS = {
    "endpoint_max_instances": 4,       # stages.<stage>.autoscaling.max (and min)
    "lambda_reserved_concurrency": 10,  # stages.<stage>.lambda.reserved_concurrency (provisioned <= reserved)
    "ttl_hours": 720,                  # stages.<stage>.ttl_hours
    "training_instances": 2,           # promote train --instances
    "max_run_s": 86400,                # training.max_run_s: MaxRuntimeInSeconds; the EC2 instance's own cap
    "max_wait_s": 172800,              # training.max_wait_s: managed spot's MaxWaitTimeInSeconds
    "tuning_max_jobs": 20,             # a tuning spec's max_jobs (MaxNumberOfTrainingJobs)
    "tuning_max_parallel_jobs": 4,     # a tuning spec's max_parallel (MaxParallelTrainingJobs)
    "ec2_max_interruptions": 3,        # promote train --ec2 --max-interruptions (a new instance each)
}


class LimitExceeded(SystemExit):
    """A value above its limit: the command stops, before any call to AWS, with this message."""


def load_limits(path: Path) -> dict[str, float]:
    """The defaults with ``promote.yaml``'s ``limits:`` over them; an unknown name or a non-number is an error."""
    given = (yaml.safe_load(Path(path).read_text()) or {}).get("limits") or {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{path}: unknown limits {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{path}: limits.{name} must be a positive number, not {value!r}")
    return {**DEFAULTS, **given}


def check(path: Path, values: dict[str, tuple[str, float]]) -> None:
    """Each ``{limit: (what, value)}`` at most its limit; else :class:`LimitExceeded` naming all that are over."""
    limits = load_limits(path)
    over = [f"{what} is {value:g}, above limits.{name} = {limits[name]:g}" for name, (what, value) in values.items()
            if value is not None and float(value) > limits[name]]
    if over:
        raise LimitExceeded(f"refused before touching AWS: {'; '.join(over)}. To allow it, raise the limit under "
                            f"`limits:` in {path} (defaults and meaning: README, \"Limits\").")
