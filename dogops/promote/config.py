"""A stage of ``promote.yaml`` as the template's parameters, and a session checked to reach the local stack or AWS."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from .limits import check

CONFIG = Path("promote.yaml")
EXPIRES_AT = "%Y-%m-%dT%H:%M:%SZ"
MIN_TTL_HOURS = 0.25  # the schedule must still lie ahead when CloudFormation creates it


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
        """The ``expires-at`` tag: now plus the stage's time to live, ISO 8601 UTC to the second (the stack's
        schedule deletes it then)."""
        now = now or datetime.now(timezone.utc)
        return (now + timedelta(hours=self.ttl_hours)).strftime(EXPIRES_AT)

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
    if stage.ttl_hours < MIN_TTL_HOURS:
        raise ValueError(f"{name}: ttl_hours must be at least {MIN_TTL_HOURS:g}: AWS deletes the stage's stack at "
                         "its expiry, which must lie ahead when the stack is made")
    return stage


def stage_limits(stage: Stage) -> dict[str, tuple[str, float]]:
    """The stage's values that ``limits`` bounds, named as ``promote.yaml`` names them."""
    at = f"stages.{stage.name}"
    return {"endpoint_max_instances": (f"{at}.autoscaling.max", stage.max_capacity),
            "lambda_reserved_concurrency": (f"{at}.lambda.reserved_concurrency", stage.reserved_concurrency),
            "ttl_hours": (f"{at}.ttl_hours", stage.ttl_hours)}


def require_digest(image: str, what: str = "image") -> str:
    """``image`` if it is a registry URI by digest (REGISTRY/REPO@sha256:...); a ``ValueError`` otherwise."""
    if "@sha256:" not in image or "/" not in image:
        raise ValueError(f"the {what} must be an ECR URI by digest (REGISTRY/REPO@sha256:...), not {image}")
    return image


def connect(name: str, path: Path, aws: bool, limits: bool = True):
    """Stage ``name`` and a session in its region whose every client reaches the local stack, or with ``aws`` AWS
    (``dogops.target``: decided from the clients' resolved endpoints; the target printed first). With ``limits``,
    a stage above ``promote.yaml``'s limits is refused first, before any call."""
    from ..target import connect as reach  # boto3: imported when a command runs, not for its --help

    stage = load_stage(name, path)
    if limits:
        check(path, stage_limits(stage))
    return stage, reach(stage.region, aws)
