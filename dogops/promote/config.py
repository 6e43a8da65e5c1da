"""A stage of ``promote.yaml`` as the template's parameters, and a session checked to reach the local stack or AWS."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

CONFIG = Path("promote.yaml")


@dataclass(frozen=True)
class Stage:
    """One stage's settings (``promote.yaml``: ``stages.<name>``)."""

    project: str
    name: str
    region: str
    instance_type: str
    min_capacity: int
    max_capacity: int
    target_invocations: float
    reserved_concurrency: int
    provisioned_concurrency: int
    log_retention_days: int
    ttl_hours: float

    @property
    def stack_name(self) -> str:
        return f"{self.project}-{self.name}"

    def expires_at(self, now: datetime | None = None) -> str:
        """The ``expires-at`` tag: now plus the stage's time to live, ISO 8601 UTC to the minute."""
        now = now or datetime.now(timezone.utc)
        return (now + timedelta(hours=self.ttl_hours)).strftime("%Y-%m-%dT%H:%MZ")

    def tags(self) -> list[dict]:
        """``project``, ``stage`` and ``expires-at`` (from now): what every resource the stage makes carries."""
        return [{"Key": "project", "Value": self.project}, {"Key": "stage", "Value": self.name},
                {"Key": "expires-at", "Value": self.expires_at()}]


def load_stage(name: str, path: Path = CONFIG) -> Stage:
    """Read stage ``name`` from ``path``; an unknown stage or a missing key is an error."""
    config = yaml.safe_load(Path(path).read_text())
    stages = config["stages"]
    if name not in stages:
        raise ValueError(f"no stage {name!r} in {path}: {', '.join(stages)}")
    s = stages[name]
    stage = Stage(config["project"], name, s["region"], s["instance_type"], int(s["autoscaling"]["min"]),
                  int(s["autoscaling"]["max"]), float(s["autoscaling"]["target_invocations_per_instance"]),
                  int(s["lambda"]["reserved_concurrency"]), int(s["lambda"]["provisioned_concurrency"]),
                  int(s["log_retention_days"]), float(s["ttl_hours"]))
    if not 1 <= stage.min_capacity <= stage.max_capacity:
        raise ValueError(f"{name}: autoscaling needs 1 <= min <= max")
    if not 1 <= stage.provisioned_concurrency <= stage.reserved_concurrency:
        raise ValueError(f"{name}: lambda needs 1 <= provisioned_concurrency <= reserved_concurrency")
    return stage


def require_digest(image: str, what: str = "image") -> str:
    """``image`` if it is a registry URI by digest (REGISTRY/REPO@sha256:...); a ``ValueError`` otherwise."""
    if "@sha256:" not in image or "/" not in image:
        raise ValueError(f"the {what} must be an ECR URI by digest (REGISTRY/REPO@sha256:...), not {image}")
    return image


def connect(name: str, path: Path, aws: bool):
    """Stage ``name`` and a session in its region whose every client reaches the local stack, or with ``aws`` AWS
    (``dogops.target``: decided from the clients' resolved endpoints; the target printed first)."""
    from ..target import connect as reach  # boto3: imported when a command runs, not for its --help

    stage = load_stage(name, path)
    return stage, reach(stage.region, aws)
