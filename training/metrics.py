"""Metric log lines and the regexes that read them back.

``metric_definitions.json`` is the single source: SageMaker's
``AlgorithmSpecification.MetricDefinitions`` and the local tuner both use it,
so what the training loop prints is what they parse.
"""

import json
import re
from pathlib import Path

DEFINITIONS_FILE = Path(__file__).with_name("metric_definitions.json")


def metric_definitions() -> list[dict[str, str]]:
    """The ``[{"Name", "Regex"}]`` list, as SageMaker expects it."""
    return json.loads(DEFINITIONS_FILE.read_text(encoding="utf-8"))


def format_metrics(prefix: str = "", **values: float) -> str:
    """One stable, tab-free log line: ``epoch=3 train_loss=0.123456 ...``."""
    parts = [prefix] if prefix else []
    parts += [f"{name}={value:.6f}" for name, value in values.items()]
    return " ".join(parts)


def parse_metrics(line: str, definitions: list[dict[str, str]] | None = None) -> dict[str, float]:
    """Apply every definition to ``line`` as SageMaker does (first group, float)."""
    found = {}
    for definition in definitions or metric_definitions():
        match = re.search(definition["Regex"], line)
        if match:
            try:
                found[definition["Name"]] = float(match.group(1))
            except ValueError:
                continue
    return found
