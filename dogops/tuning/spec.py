"""The tuning spec: SageMaker's ``HyperParameterTuningJobConfig`` in a YAML or JSON file.

Keys (as in the API): ``Strategy`` (Bayesian | Random | Hyperband | Grid),
``HyperParameterTuningJobObjective`` (``Type``, ``MetricName``), ``ResourceLimits``
(``MaxNumberOfTrainingJobs``, ``MaxParallelTrainingJobs``), ``ParameterRanges``
(``ContinuousParameterRanges``, ``IntegerParameterRanges``, ``CategoricalParameterRanges``
with ``ScalingType`` Auto | Linear | Logarithmic | ReverseLogarithmic),
``TrainingJobEarlyStoppingType`` (Off | Auto), ``StrategyConfig.HyperbandStrategyConfig``,
``RandomSeed``; plus ``StaticHyperParameters`` and ``MetricDefinitions`` (default: the
training code's own ``metric_definitions.json``).
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from training.hyperparameters import Hyperparameters, is_platform_key
from training.metrics import metric_definitions

if TYPE_CHECKING:  # optuna is imported where a search runs: the emulator validates specs without it
    import optuna

DEFAULT_SPEC = Path(__file__).with_name("default-spec.yaml")
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")  # Hyperband's MaxResource, as AWS infers it
KNOWN_KEYS = {"Strategy", "HyperParameterTuningJobObjective", "ResourceLimits", "ParameterRanges",
              "TrainingJobEarlyStoppingType", "StrategyConfig", "RandomSeed", "StaticHyperParameters",
              "MetricDefinitions"}


class SpecError(ValueError):
    """The spec is not a valid tuning job description."""


@dataclasses.dataclass(frozen=True)
class Range:
    """One tunable hyperparameter."""

    name: str
    kind: str  # continuous | integer | categorical
    low: float = 0.0
    high: float = 0.0
    scaling: str = "Linear"  # after resolving Auto
    values: tuple[str, ...] = ()

    def suggest(self, trial: "optuna.Trial") -> str:
        """Sample this range in ``trial``; the value as ``hyperparameters.json`` holds it."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "integer":
            return str(trial.suggest_int(self.name, int(self.low), int(self.high), log=self.scaling == "Logarithmic"))
        if self.scaling == "ReverseLogarithmic":  # dense near 1: sample 1 - x on a log scale
            y = trial.suggest_float(f"{self.name}__one_minus", 1 - self.high, 1 - self.low, log=True)
            trial.set_user_attr(self.name, repr(1 - y))
            return repr(1 - y)
        return repr(trial.suggest_float(self.name, self.low, self.high, log=self.scaling == "Logarithmic"))

    def observed(self, value: str) -> tuple[str, "optuna.distributions.BaseDistribution", object] | None:
        """``value`` as :meth:`suggest` would have recorded it (parameter, distribution, internal value), for a
        warm start's earlier trials; None when this range could not have drawn it."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return (self.name, CategoricalDistribution(list(self.values)), value) if value in self.values else None
        try:
            number = float(_unquoted(value))
        except ValueError:
            return None
        if not self.low <= number <= self.high or (self.kind == "integer" and not number.is_integer()):
            return None
        if self.kind == "integer":
            return self.name, IntDistribution(int(self.low), int(self.high), log=self.scaling == "Logarithmic"), int(
                number)
        if self.scaling == "ReverseLogarithmic":
            low, high = 1 - self.high, 1 - self.low
            return f"{self.name}__one_minus", FloatDistribution(low, high, log=True), min(max(1 - number, low), high)
        return self.name, FloatDistribution(self.low, self.high, log=self.scaling == "Logarithmic"), number


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    """A validated spec."""

    raw: dict
    strategy: str
    objective: str
    minimize: bool
    max_jobs: int
    max_parallel: int
    ranges: tuple[Range, ...]
    static: dict[str, str]
    early_stopping: bool
    metric_definitions: list[dict[str, str]]
    seed: int
    min_resource: int = 1
    max_resource: int = 0

    @property
    def direction(self) -> str:
        return "minimize" if self.minimize else "maximize"

    def grid(self) -> dict[str, list[str]]:
        return {r.name: list(r.values) for r in self.ranges}


def _resolve_scaling(name: str, scaling: str, low: float, high: float, kind: str) -> str:
    if scaling not in SCALINGS:
        raise SpecError(f"{name}: ScalingType must be one of {', '.join(SCALINGS)}")
    if scaling == "Auto":  # SageMaker picks; we choose log for ranges spanning two or more decades
        scaling = "Logarithmic" if low > 0 and high / low >= 100 else "Linear"
    if scaling == "Logarithmic" and low <= 0:
        raise SpecError(f"{name}: Logarithmic scaling needs MinValue > 0")
    if scaling == "ReverseLogarithmic" and (kind != "continuous" or not 0 <= low < high < 1):
        raise SpecError(f"{name}: ReverseLogarithmic needs a continuous range with 0 <= MinValue < MaxValue < 1")
    return scaling


def _ranges(raw: dict) -> list[Range]:
    ranges = []
    for key, kind in (("ContinuousParameterRanges", "continuous"), ("IntegerParameterRanges", "integer")):
        for item in raw.get(key, []):
            name = item["Name"]
            low, high = float(item["MinValue"]), float(item["MaxValue"])
            if not low < high:
                raise SpecError(f"{name}: MinValue must be below MaxValue")
            if kind == "integer" and not (low.is_integer() and high.is_integer()):
                raise SpecError(f"{name}: integer ranges need whole-number bounds")
            scaling = _resolve_scaling(name, item.get("ScalingType", "Auto"), low, high, kind)
            ranges.append(Range(name, kind, low, high, scaling))
    for item in raw.get("CategoricalParameterRanges", []):
        values = tuple(str(v) for v in item["Values"])
        if not 1 <= len(values) <= 30:
            raise SpecError(f"{item['Name']}: a categorical range has 1 to 30 values")
        ranges.append(Range(item["Name"], "categorical", values=values))
    return ranges


def _unquoted(text: str) -> str:
    """A static value as the program reads it (SDK v2's framework estimators JSON-quote every string)."""
    return json.loads(text) if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_spec(raw: dict, train_names: bool = True) -> TuningSpec:
    """Validate a spec dict; every problem is a SpecError naming the field. With ``train_names``, every
    hyperparameter must be one ``train`` knows (the keys SageMaker and its SDKs add, ``sagemaker_*``, always pass:
    a user's own script takes what it likes)."""
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise SpecError(f"unknown spec key(s): {', '.join(sorted(unknown))}")
    try:
        strategy = raw.get("Strategy", "Bayesian")
        if strategy not in STRATEGIES:
            raise SpecError(f"Strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        objective = raw["HyperParameterTuningJobObjective"]
        definitions = raw.get("MetricDefinitions") or metric_definitions()
        if objective["MetricName"] not in {d["Name"] for d in definitions}:
            raise SpecError(f"objective metric {objective['MetricName']!r} is not among the metric definitions "
                            f"({', '.join(d['Name'] for d in definitions)})")
        if objective["Type"] not in ("Minimize", "Maximize"):
            raise SpecError("HyperParameterTuningJobObjective.Type must be Minimize or Maximize")
        limits = raw.get("ResourceLimits", {})
        max_parallel = int(limits.get("MaxParallelTrainingJobs", 1))
        ranges = _ranges(raw.get("ParameterRanges", {}))
        if not ranges:
            raise SpecError("ParameterRanges holds no range to tune")
        static = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (raw.get("StaticHyperParameters") or {}).items()}
        clash = {r.name for r in ranges} & set(static)
        if clash:
            raise SpecError(f"{', '.join(sorted(clash))} is both static and tuned")
        known = {f.name for f in dataclasses.fields(Hyperparameters)}
        strange = sorted(n for n in ({r.name for r in ranges} | set(static)) - known if not is_platform_key(n))
        if strange and train_names:
            raise SpecError(f"unknown hyperparameter(s) {', '.join(strange)}; train knows {', '.join(sorted(known))}")
        early = raw.get("TrainingJobEarlyStoppingType", "Off")
        if early not in ("Off", "Auto"):
            raise SpecError("TrainingJobEarlyStoppingType must be Off or Auto")
        if strategy == "Grid":
            if any(r.kind != "categorical" for r in ranges):
                raise SpecError("the Grid strategy takes categorical ranges only")
            combinations = math.prod(len(r.values) for r in ranges)
            max_jobs = int(limits.get("MaxNumberOfTrainingJobs", combinations))
            if max_jobs != combinations:
                raise SpecError(f"Grid: MaxNumberOfTrainingJobs must equal the {combinations} combinations")
        else:
            max_jobs = int(limits.get("MaxNumberOfTrainingJobs", 1))
        hyperband = (raw.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
        if strategy == "Hyperband" and early != "Off":
            raise SpecError("Hyperband does its own early stopping: TrainingJobEarlyStoppingType must be Off")
        inferred = next((static[k] for k in EPOCH_KEYS if k in static), "0") if strategy == "Hyperband" else "0"
        max_resource = int(hyperband.get("MaxResource", 0)) or int(_unquoted(inferred))
        if strategy == "Hyperband" and not max_resource:
            raise SpecError("MaxResource parameter is not provided and could not be inferred from provided static "
                            f"hyperparameters ({', '.join(EPOCH_KEYS)}) of TrainingJobDefinition")
    except KeyError as exc:
        raise SpecError(f"missing spec field {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"malformed spec: {exc}") from None
    if max_jobs < 1 or max_parallel < 1:
        raise SpecError("MaxNumberOfTrainingJobs and MaxParallelTrainingJobs must be >= 1")
    return TuningSpec(raw, strategy, objective["MetricName"], objective["Type"] == "Minimize", max_jobs,
                      max_parallel, tuple(ranges), static, early == "Auto", definitions,
                      int(raw.get("RandomSeed", 0)), int(hyperband.get("MinResource", 1)), max_resource)


def load_spec(path: Path | None = None) -> TuningSpec:
    """Read a YAML or JSON spec (the original project's search when ``path`` is None)."""
    path = Path(path or DEFAULT_SPEC)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read spec {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path} must hold a mapping")
    return parse_spec(raw)


def sampler_and_pruner(spec: TuningSpec) -> tuple["optuna.samplers.BaseSampler", "optuna.pruners.BasePruner"]:
    """optuna's counterparts of the spec's strategy and early stopping."""
    import optuna

    if spec.strategy == "Grid":
        sampler = optuna.samplers.GridSampler(spec.grid(), seed=spec.seed)
    elif spec.strategy == "Random":
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:  # Bayesian, and Hyperband's sampler
        sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(4, spec.max_jobs))
    if spec.strategy == "Hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=spec.min_resource, max_resource=spec.max_resource)
    elif spec.early_stopping:  # SageMaker's rule: stop when worse than the median of earlier trials at that epoch
        pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner
