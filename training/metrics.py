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


class MetricReader:
    """A job's ``MetricDefinitions``, compiled once, read from its log lines as SageMaker reads them: each
    definition's regex searched in the line, its first group taken as a float; a definition whose match has no
    group or no number yields nothing for that line."""

    def __init__(self, definitions: list[dict[str, str]]):
        self.patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]

    def read(self, line: str) -> dict[str, float]:
        found = {}
        for name, pattern in self.patterns:
            match = pattern.search(line)
            if match:
                try:
                    found[name] = float(match.group(1))
                except (ValueError, IndexError):
                    continue
        return found


def parse_metrics(line: str, definitions: list[dict[str, str]] | None = None) -> dict[str, float]:
    """The metrics in ``line`` by ``definitions`` (default: this training code's own)."""
    return MetricReader(metric_definitions() if definitions is None else definitions).read(line)
