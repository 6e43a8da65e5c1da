"""Typed hyperparameters: one set of names for flags and ``hyperparameters.json``.

SageMaker passes every value as a string, sometimes JSON-encoded (``"true"``,
``"\\"resnet50\\""``) and sometimes ``str()``-encoded (``"True"``); both are
accepted. Unknown names are an error, except the keys SageMaker and its SDKs
add themselves (``sagemaker_*``, ``_tuning_objective_metric``).
"""

import argparse
import dataclasses
import json
from typing import Any

BACKBONES = ("resnet50", "resnet18", "efficientnet_lite0")


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """What a training run learns with. Field docs are the ``--help`` texts."""

    learning_rate: float = 0.001  # Adam step size
    batch_size: int = 64  # images per optimisation step (global, across hosts)
    epochs: int = 10  # upper bound; early stopping may end sooner
    patience: int = 3  # epochs without a better validation loss before stopping
    backbone: str = "resnet50"  # resnet50 | resnet18 | efficientnet_lite0
    pretrained: bool = True  # ImageNet weights for the frozen backbone
    weights: str = ""  # path to a backbone state dict (overrides the default source)
    hidden_units: int = 128  # width of the head's hidden layer (2048->128->133 in the original)
    image_size: int = 224  # square input side in pixels
    seed: int = 0  # makes data order, head init and results repeatable
    feature_cache: bool = True  # reuse backbone features across epochs and runs

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, not {self.backbone!r}")
        for name in ("batch_size", "epochs", "hidden_units", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, not {self.patience}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 pixels, not {self.image_size}")

    def to_strings(self) -> dict[str, str]:
        """The ``hyperparameters.json`` form: every value a string."""
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.as_dict().items()}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Hyperparameters)}


def str2bool(text: str) -> bool:
    """``True``/``true``/``1``/``yes`` and their opposites; anything else is an error."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


_KINDS = {bool: ("a boolean", str2bool), int: ("an integer", int), float: ("a number", float), str: ("text", str)}


def _convert(name: str, raw: Any) -> Any:
    what, parse = _KINDS[_fields()[name].type]
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if len(text) >= 2 and text[0] == text[-1] == '"':  # JSON-quoted by SDK v2 framework estimators
        text = json.loads(text)
    if parse is int and text.endswith(".0"):  # "5.0" from a float-typed tuning range
        text = text[:-2]
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"hyperparameter {name}: cannot read {raw!r} as {what}") from None


def is_platform_key(name: str) -> bool:
    """Keys that SageMaker or its SDKs add and that the program ignores."""
    return name.startswith("sagemaker_") or name == "_tuning_objective_metric"


def from_strings(values: dict[str, Any]) -> Hyperparameters:
    """Build hyperparameters from ``hyperparameters.json``-style values (strict)."""
    known = _fields()
    unknown = sorted(k for k in values if k not in known and not is_platform_key(k))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return Hyperparameters(**{k: _convert(k, v) for k, v in values.items() if k in known})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--name`` flag per hyperparameter (``--learning-rate`` also accepted)."""
    for name, field in _fields().items():
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*flags, dest=name, default=None, metavar=name.upper(),
                            help=f"(default: {field.default})")


def from_namespace(args: argparse.Namespace) -> Hyperparameters:
    """Hyperparameters from parsed flags; unset flags keep their defaults."""
    return from_strings({k: getattr(args, k) for k in _fields() if getattr(args, k) is not None})
