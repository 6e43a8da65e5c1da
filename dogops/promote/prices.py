"""The plan's cost estimate, from the dated, region-keyed price table ``prices.json``."""

import json
from pathlib import Path

from ..lambda_deploy import MEMORY
from .config import Stage

TABLE = Path(__file__).with_name("prices.json")


def load_prices(path: Path = TABLE) -> dict:
    return json.loads(Path(path).read_text())


def estimate(stage: Stage, model_bytes: int, table: dict | None = None) -> dict:
    """USD per hour for the endpoint at min and max capacity, provisioned concurrency and storage."""
    table = table or load_prices()
    if stage.region not in table["regions"]:
        raise ValueError(f"no prices for region {stage.region} in {TABLE} (as of {table['as_of']})")
    prices = table["regions"][stage.region]
    hosting = prices["sagemaker_hosting_per_hour"]
    if stage.instance_type not in hosting:
        raise ValueError(f"no price for {stage.instance_type} in {stage.region} in {TABLE}")
    instance = hosting[stage.instance_type]
    provisioned = stage.provisioned_concurrency * MEMORY / 1024 * 3600 * prices["lambda_provisioned_per_gb_second"]
    storage = model_bytes / 2**30 * prices["s3_standard_per_gb_month"] / table["hours_per_month"]
    per_hour = {"endpoint_min": stage.min_capacity * instance, "endpoint_max": stage.max_capacity * instance,
                "provisioned_concurrency": provisioned, "storage": storage}
    return {"per_hour": per_hour, "hours_per_month": table["hours_per_month"], "as_of": table["as_of"]}


def format_estimate(stage: Stage, cost: dict) -> str:
    """The estimate as lines: each item, then the totals at min and max capacity, per hour and per month."""
    h, month = cost["per_hour"], cost["hours_per_month"]
    rows = [(f"endpoint, {stage.min_capacity} x {stage.instance_type} (min)", h["endpoint_min"]),
            (f"endpoint, {stage.max_capacity} x {stage.instance_type} (max)", h["endpoint_max"]),
            (f"lambda provisioned concurrency {stage.provisioned_concurrency} x {MEMORY} MB", h["provisioned_concurrency"]),
            ("storage (model.tar.gz in S3)", h["storage"])]
    fixed = h["provisioned_concurrency"] + h["storage"]
    rows += [("total at min capacity", h["endpoint_min"] + fixed), ("total at max capacity", h["endpoint_max"] + fixed)]
    lines = [f"cost estimate ({stage.region}, prices as of {cost['as_of']}; requests and data transfer extra):"]
    lines += [f"  {name:<48} ${value:>9.4f}/h  ${value * month:>9.2f}/month" for name, value in rows]
    return "\n".join(lines)
