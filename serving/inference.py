"""The dogops model's handlers: the successor of the original ``inference2.py``.

The SageMaker inference toolkit's contract: ``model_fn(model_dir)``,
``input_fn(body, content_type)``, ``predict_fn(data, model)`` and
``output_fn(prediction, accept)``, each taking an optional trailing
``context``. They serve a dogops artifact (a model directory with a
manifest); a ``code/inference.py`` in it (or the module named by
``SAGEMAKER_PROGRAM``) replaces any of them. Any other model gets the PyTorch
toolkit's defaults (``serving.toolkit_defaults``).

Inputs: raw image bytes (``image/jpeg``, ``image/png``, ``application/x-image``,
``application/octet-stream``) or ``application/json`` ``{"url": "https://..."}``.
Outputs: ``application/json`` -> ``[[log-probability of each class]]``; top-k
breeds with probabilities via ``Accept: application/vnd.dogops.topk+json`` or
``X-Amzn-SageMaker-Custom-Attributes: top_k=5``.
"""

import dataclasses
import functools
import json
import math

import torch

from training.artifact import load_artifact
from training.breeds import display_name
from training.preprocess import image_transform

from .errors import BadRequest, NotAcceptable, UnsupportedMediaType
from .images import decode_image
from .settings import Settings
from .url_fetch import FetchPolicy, fetch_image

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/octet-stream")
JSON = "application/json"
TOPK = "application/vnd.dogops.topk+json"
ACCEPT_TYPES = (JSON, TOPK)
DEFAULT_TOP_K = 5
DRAFT_SIZE = 256  # decode big JPEGs at no less than twice this on the short side


@functools.cache
def _settings() -> Settings:
    return Settings.from_env()


@dataclasses.dataclass
class Model:
    """What ``model_fn`` returns: the network, its class names and its input transform."""

    network: torch.nn.Module
    classes: list[str]
    transform: object


@dataclasses.dataclass
class Prediction:
    """What ``predict_fn`` returns: log-probabilities with the class names they belong to."""

    log_probs: torch.Tensor
    classes: list[str]


def model_fn(model_dir, context=None) -> Model:
    """Load the artifact written by ``train`` (manifest-verified) and warm it up."""
    network, classes, config = load_artifact(model_dir)
    transform = image_transform(config["backbone"], config["image_size"])
    with torch.inference_mode():
        network(torch.zeros(1, 3, config["image_size"], config["image_size"]))
    return Model(network, classes, transform)


def input_fn(input_data, content_type: str, context=None):
    """Request body -> an RGB image, from the bytes themselves or from ``{"url": ...}``."""
    settings = _settings()
    if content_type in IMAGE_TYPES:
        return decode_image(bytes(input_data), settings.max_pixels, DRAFT_SIZE)
    if content_type == JSON:
        try:
            payload = json.loads(input_data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"malformed JSON: {exc}") from None
        url = payload.get("url") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url:
            raise BadRequest('JSON requests need a "url" string: {"url": "https://.../dog.jpg"}')
        policy = FetchPolicy(settings.fetch_allow, settings.fetch_connect_timeout, settings.fetch_read_timeout,
                             settings.fetch_total_timeout, settings.fetch_max_bytes)
        return decode_image(fetch_image(url, policy), settings.max_pixels, DRAFT_SIZE)
    raise UnsupportedMediaType(
        f"Content-Type {content_type or '(none)'} is not supported; use one of {', '.join(IMAGE_TYPES + (JSON,))}")


def predict_fn(data, model: Model, context=None) -> Prediction:
    """Preprocess as in training, run the classifier, return log-probabilities."""
    with torch.inference_mode():
        log_probs = model.network(model.transform(data).unsqueeze(0))
    return Prediction(log_probs, model.classes)


def negotiate_accept(accept: str) -> str:
    """The first supported type in a comma-separated Accept (parameters ignored), or NotAcceptable."""
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("*/*", "application/*"):
            return JSON
        if media in ACCEPT_TYPES:
            return media
    raise NotAcceptable(f"Accept {accept!r} is not supported; use {JSON} or {TOPK}")


def _top_k(context) -> int | None:
    attributes = getattr(context, "custom_attributes", "") or ""
    for pair in attributes.split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "top_k":
            try:
                k = int(value)
            except ValueError:
                raise BadRequest(f"top_k must be an integer, not {value.strip()!r}") from None
            if k < 1:
                raise BadRequest("top_k must be >= 1")
            return k
    return None


def output_fn(prediction: Prediction, accept: str, context=None) -> tuple[str, str]:
    """``[[...]]`` log-probabilities, or the top-k breeds when asked for."""
    media = negotiate_accept(accept)
    k = _top_k(context)
    if media == JSON and k is None:
        return json.dumps(prediction.log_probs.tolist()), JSON
    k = min(k or DEFAULT_TOP_K, len(prediction.classes))
    values, indices = prediction.log_probs[0].topk(k)
    top = [{"rank": rank, "breed": display_name(prediction.classes[i]), "class": prediction.classes[i],
            "index": i, "probability": round(math.exp(v), 6), "log_probability": float(v)}
           for rank, (v, i) in enumerate(zip(values.tolist(), indices.tolist()), 1)]
    return json.dumps({"predictions": top}), media if media == TOPK else JSON
