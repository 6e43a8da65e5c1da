"""``dogops status --aws``: what runs for the project in AWS (or the local emulator), what it costs per hour,
and what is past its ``expires-at`` tag; ``--aws --enforce-ttl`` deletes the expired once confirmed (``--yes``). Each region is reached through a
session checked to reach the local stack or AWS with every client (``dogops.target``), its target printed first.

Found through the Resource Groups Tagging API (tag ``project``), each stage's stack and its resources, and the
ECR repositories ``dogops promote push`` tagged. Cost per hour: an endpoint's instance type times its
``CurrentInstanceCount`` (DescribeEndpoint), a function's provisioned concurrency (ListProvisionedConcurrencyConfigs;
where that API is missing, as on the emulator, the stack's ``ProvisionedConcurrency``), priced from ``prices.json``.
"""

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml
from botocore.exceptions import ClientError

from ..target import connect
from .config import CONFIG, EXPIRES_AT, Stage, load_stage
from .destroy import destroy
from .prices import load_prices
from .push import repositories
from .stack import _stack

TIME = "%Y-%m-%dT%H:%MZ"


@dataclass
class Row:
    """One thing that runs: its stage, kind, name, expiry and USD per hour (None: no hourly charge known)."""

    stage: str
    kind: str
    name: str
    arn: str
    expires_at: str | None = None
    per_hour: float | None = None
    note: str = ""
    stack: str | None = None  # the stage stack that owns it
    params: dict = field(default_factory=dict)  # that stack's parameters

    def expired(self, now: datetime) -> bool:
        return bool(self.expires_at) and _time(self.expires_at) < now

    def document(self, now: datetime) -> dict:
        return {"stage": self.stage, "type": self.kind, "name": self.name, "arn": self.arn, "stack": self.stack,
                "expires_at": self.expires_at, "expired": self.expired(now), "usd_per_hour": self.per_hour,
                "note": self.note}


def _time(text: str) -> datetime:
    """An ``expires-at`` value: to the second (``EXPIRES_AT``), or to the minute as stacks made before had it."""
    try:
        return datetime.strptime(text, EXPIRES_AT).replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.strptime(text, TIME).replace(tzinfo=timezone.utc)


def _kind(arn: str) -> tuple[str, str]:
    """``(kind, name)`` of an ARN: ``arn:aws:sagemaker:r:a:endpoint/x`` -> ``("sagemaker endpoint", "x")``."""
    parts = arn.split(":", 5)
    service, resource = parts[2], parts[5]
    kind, sep, name = resource.partition("/") if "/" in resource.split(":")[0] else resource.partition(":")
    if service == "cloudformation":
        name = name.split("/")[0]  # stack/NAME/ID
    return (f"{service} {kind}", name) if sep else (service, resource)


def _tagged(session, project: str) -> list[Row]:
    pages = session.client("resourcegroupstaggingapi").get_paginator("get_resources").paginate(
        TagFilters=[{"Key": "project", "Values": [project]}])
    rows = []
    for page in pages:
        for resource in page["ResourceTagMappingList"]:
            arn = re.search(r"arn:[^'\"\s]+", resource["ResourceARN"])[0]  # moto quotes some ARNs
            tags = {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
            rows.append(Row(tags.get("stage", "?"), *_kind(arn), arn, tags.get("expires-at")))
    return rows


def _stage_stack(session, stage: Stage) -> list[Row]:
    """The stage's stack (expiry from its ExpiresAt parameter) and its functions, which not every tagging API lists."""
    cfn = session.client("cloudformation")
    current = _stack(cfn, stage.stack_name)
    if current is None or current["StackStatus"] in ("DELETE_COMPLETE", "REVIEW_IN_PROGRESS"):
        return []
    params = {p["ParameterKey"]: p["ParameterValue"] for p in current.get("Parameters", [])}
    owned = {"stack": stage.stack_name, "params": params, "expires_at": params.get("ExpiresAt")}
    rows = [Row(stage.name, "cloudformation stack", stage.stack_name, current["StackId"], note=current["StackStatus"],
                **owned)]
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stage.stack_name)
    for resource in (r for page in pages for r in page["StackResourceSummaries"]):
        physical = resource.get("PhysicalResourceId") or ""
        if resource.get("ResourceType") == "AWS::Lambda::Function":
            rows.append(Row(stage.name, "lambda function", physical, physical, **owned))
        elif resource.get("ResourceType") == "AWS::SageMaker::Endpoint":
            rows.append(Row(stage.name, "sagemaker endpoint", physical.rsplit("/", 1)[-1], physical, **owned))
    return rows


def _price_endpoint(row: Row, session, prices: dict) -> None:
    sagemaker = session.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=row.name)
    types = {v["VariantName"]: v.get("InstanceType") for v in sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"]}
    row.per_hour, parts = 0.0, []
    for variant in endpoint.get("ProductionVariants", []):
        count, kind = variant.get("CurrentInstanceCount", 0), types.get(variant["VariantName"])
        price = prices.get("sagemaker_hosting_per_hour", {}).get(kind)
        parts.append(f"{count} x {kind}")
        row.per_hour = None if price is None or row.per_hour is None else row.per_hour + count * price
    row.note = f"{endpoint['EndpointStatus']}, {', '.join(parts)}" + ("" if row.per_hour is not None else
                                                                     " (no price in prices.json)")


def _price_function(row: Row, session, prices: dict) -> None:
    lam = session.client("lambda")
    memory = lam.get_function_configuration(FunctionName=row.name)["MemorySize"]
    try:
        pages = lam.get_paginator("list_provisioned_concurrency_configs").paginate(FunctionName=row.name)
        count = sum(c.get("AllocatedProvisionedConcurrentExecutions") or c.get("RequestedProvisionedConcurrentExecutions")
                    or 0 for page in pages for c in page["ProvisionedConcurrencyConfigs"])
        source = ""
    except ClientError:  # the emulator has no provisioned-concurrency API: what the stack asked for
        count, source = int(row.params.get("ProvisionedConcurrency") or 0), ", from the stack's parameters"
    row.per_hour = count * memory / 1024 * 3600 * prices["lambda_provisioned_per_gb_second"]
    row.note = f"{count} provisioned x {memory} MB{source}"


def running(session_for, config: Path = CONFIG) -> list[Row]:
    """Everything tagged with the project in each stage's region (``session_for(region)``), and the stage stacks,
    priced."""
    data = yaml.safe_load(Path(config).read_text())
    project, table = data["project"], load_prices()
    stages = [load_stage(name, config) for name in data["stages"]]
    rows: list[Row] = []
    for region in sorted({s.region for s in stages}):
        session = session_for(region)
        prices = table["regions"].get(region)
        found = [row for s in stages if s.region == region for row in _stage_stack(session, s)]
        found += _tagged(session, project)
        found += [Row(r["stage"] or "?", "ecr repository", r["name"], r["arn"])
                  for r in repositories(session.client("ecr"), project)]
        seen: dict[tuple[str, str], Row] = {}
        for row in found:  # the stack's rows first: they know their stack
            key = (row.kind, row.name)
            if key in seen:
                seen[key].expires_at = seen[key].expires_at or row.expires_at
                continue
            seen[key] = row
            if prices and row.kind == "sagemaker endpoint":
                _price_endpoint(row, session, prices)
            elif prices and row.kind == "lambda function":
                _price_function(row, session, prices)
        rows += seen.values()
    return rows


def report(rows: list[Row], now: datetime, hours_per_month: float = 730) -> str:
    """A table (stage, type, name, expires-at, $/hour) with a total and the expired ones called out."""
    lines = [f"{'STAGE':<7} {'TYPE':<25} {'NAME':<44} {'EXPIRES-AT':<25} {'$/HOUR':>8}  NOTE"]
    for row in sorted(rows, key=lambda r: (r.stage, r.kind, r.name)):
        cost = "-" if row.per_hour is None else f"{row.per_hour:.4f}"
        expiry = (row.expires_at or "-") + (" EXPIRED" if row.expired(now) else "")
        lines.append(f"{row.stage:<7} {row.kind:<25} {row.name:<44} {expiry:<25} {cost:>8}  {row.note}".rstrip())
    total = sum(r.per_hour or 0 for r in rows)
    lines.append(f"total: ${total:.4f}/hour (${total * hours_per_month:.2f}/month at this rate); "
                 f"storage, requests and data transfer extra")
    expired = [r for r in rows if r.kind == "sagemaker endpoint" and r.expired(now)]
    for row in expired:
        lines.append(f"EXPIRED: endpoint {row.name} (stage {row.stage}) expired at {row.expires_at}; "
                     "`dogops status --aws --enforce-ttl` deletes it")
    return "\n".join(lines) if rows else "nothing tagged with the project is running"


def confirmed(question: str, yes: bool) -> bool:
    """``yes``, or the answer to ``question`` on a terminal (asked on stderr, so ``--json``'s stdout stays one
    document); no terminal and no ``yes``: not confirmed."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return input().strip().lower() in ("y", "yes")


def enforce_ttl(rows: list[Row], now: datetime, session_for, config: Path = CONFIG, echo=print,
                yes: bool = False) -> list[str]:
    """Delete each expired endpoint: its stage's stack when a stack owns it, else the endpoint alone; only once
    confirmed (``yes``, or asked on a terminal)."""
    expired = [r for r in rows if r.kind == "sagemaker endpoint" and r.expired(now)]
    targets = ", ".join(sorted({str(session_for(r.arn.split(":")[3]).target) for r in expired}))
    if expired and not confirmed(f"delete {', '.join(r.stack or r.name for r in expired)} on {targets}?", yes):
        raise SystemExit("nothing deleted: --enforce-ttl deletes only once confirmed (pass --yes to delete "
                         "without asking)")
    done = []
    for row in expired:
        if row.stack:
            stage = load_stage(row.stage, config)
            echo(f"stage {row.stage} expired at {row.expires_at}: deleting stack {row.stack}")
            destroy(stage, session_for(stage.region), echo)
            done.append(row.stack)
        else:
            region = row.arn.split(":")[3]
            echo(f"endpoint {row.name} expired at {row.expires_at} and no stage stack owns it: deleting it")
            session_for(region).client("sagemaker").delete_endpoint(EndpointName=row.name)
            done.append(row.name)
    if not done:
        echo("nothing has expired")
    return done


def status(config: Path = CONFIG, enforce: bool = False, echo=print, yes: bool = False) -> dict:
    """Print what runs, and with ``enforce`` delete what has expired; return both as ``status --aws --json`` prints
    them (the keys: README's "Machine-readable output")."""
    now = datetime.now(timezone.utc)
    sessions = {}

    def session_for(region: str):
        if region not in sessions:
            sessions[region] = connect(region, None)
        return sessions[region]

    rows = running(session_for, config)
    echo(f"running for the project ({datetime.strftime(now, TIME)}):")
    echo(report(rows, now))
    deleted = enforce_ttl(rows, now, session_for, config, echo, yes) if enforce else []
    return {"targets": [session.target.document() for session in sessions.values()], "time": now.strftime(TIME),
            "resources": [row.document(now) for row in sorted(rows, key=lambda r: (r.stage, r.kind, r.name))],
            "usd_per_hour": sum(r.per_hour or 0 for r in rows), "deleted": deleted}
