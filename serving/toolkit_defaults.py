"""The SageMaker PyTorch inference toolkit's default handlers, for scripts that define only some.

What ``sagemaker_pytorch_serving_container.default_pytorch_inference_handler``
does, on ``sagemaker_inference``'s decoder and encoder:

- ``model_fn``: TorchScript from ``model.pt``, else from the one ``.pt``/``.pth``
  file in the model directory, onto the GPU when there is one;
- ``input_fn``: ``application/json`` and ``text/csv`` into a float32 tensor,
  ``application/x-npy`` into a tensor of the array's own dtype;
- ``predict_fn``: ``model(tensor)`` in eval mode under ``torch.no_grad()``, on the GPU when there is one;
- ``output_fn``: the prediction (a tensor becomes nested lists) as the first
  type of the Accept list, compared whole as the toolkit does, among JSON, CSV and NPY.

The toolkit's messages are kept. Its failures are 500s; here an unsupported
Content-Type is a 415, an unsupported Accept a 406 and a body or tensor that
the model cannot take a 400, each with the message. Two more departures: an
NPY body may not hold pickled objects (the toolkit unpickles request bodies),
and the answer's Content-Type is the type chosen, not the whole Accept header.
"""

import io
import json
from pathlib import Path

import numpy as np
import torch

from .errors import BadRequest, NotAcceptable, UnsupportedMediaType

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
UTF8_TYPES = (JSON, CSV)  # the server hands these to input_fn as str
MODEL_FILE = "model.pt"
MODEL_SUFFIXES = (".pt", ".pth")


class ModelLoadError(RuntimeError):
    """No model file to load, or not a TorchScript one."""


def unsupported(content_type: str) -> str:
    """The toolkit's ``UnsupportedFormatError`` message."""
    return (f"Content type {content_type or '(none)'} is not supported by this framework. Please implement "
            "input_fn to deserialize the request data or an output_fn to serialize the response. "
            "For more information, see the SageMaker Python SDK README.")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_file(model_dir) -> Path:
    """The file ``model_fn`` loads: ``model.pt``, else the only ``.pt`` or ``.pth`` file."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if path.exists():
        return path
    found = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
    if len(found) != 1:
        raise ModelLoadError(f"Exactly one .pth or .pt file is required for PyTorch models: {found}")
    return model_dir / found[0]


def model_fn(model_dir):
    """Load the TorchScript model (``torch.jit.save``) onto the GPU when there is one, else the CPU."""
    device, path = _device(), model_file(model_dir)
    try:
        model = torch.jit.load(path, map_location=device)
    except RuntimeError as exc:
        raise ModelLoadError(f"Failed to load {path}. Please ensure model is saved using torchscript.") from exc
    return model.to(device)


DECODERS = {
    JSON: lambda text: np.array(json.loads(text)),
    CSV: lambda text: np.genfromtxt(io.StringIO(text), delimiter=","),
    NPY: lambda data: np.load(io.BytesIO(data), allow_pickle=False),
}


def input_fn(input_data, content_type: str) -> torch.Tensor:
    """JSON or CSV -> a float32 tensor, NPY -> a tensor of its dtype; on the GPU when there is one."""
    decode = DECODERS.get(content_type)
    if decode is None:
        raise UnsupportedMediaType(unsupported(content_type))
    try:
        array = decode(input_data)
        tensor = torch.as_tensor(array, dtype=torch.float32) if content_type in UTF8_TYPES else torch.from_numpy(array)
    except (ValueError, TypeError, EOFError) as exc:
        raise BadRequest(f"the {content_type} body is not a numeric array: {exc}") from None
    return tensor.to(_device())


def predict_fn(data: torch.Tensor, model):
    """``model(data)`` in eval mode without gradients, model and data on the GPU when there is one."""
    device = _device()
    with torch.no_grad():
        model = model.to(device)
        model.eval()
        try:
            return model(data.to(device))
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise BadRequest(f"the model cannot take a {str(data.dtype).removeprefix('torch.')} tensor "
                             f"of shape {list(data.shape)}: {reason}") from None


def _array_to_json(value) -> str:
    def default(item):
        if hasattr(item, "tolist"):
            return item.tolist()
        raise TypeError(f"a {type(item).__name__} cannot be written as JSON")
    return json.dumps(value, default=default)


def _array_to_csv(value) -> bytes:
    stream = io.StringIO()
    try:
        np.savetxt(stream, value, delimiter=",", fmt="%s")
    except ValueError as exc:  # 0-D or over 2-D
        raise NotAcceptable(f"this prediction cannot be written as {CSV}: {exc}") from None
    return stream.getvalue().encode("utf-8")


def _array_to_npy(value) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value)
    return buffer.getvalue()


ENCODERS = {JSON: _array_to_json, CSV: _array_to_csv, NPY: _array_to_npy}


def negotiate_accept(accept: str) -> str:
    """The first type in the Accept list that can be written, compared whole (no parameters, no wildcards)."""
    for media in accept.replace(" ", "").split(","):
        if media in ENCODERS:
            return media
    raise NotAcceptable(unsupported(accept))


def output_fn(prediction, accept: str) -> tuple[bytes | str, str]:
    """The prediction as JSON, CSV or NPY; a tensor is written as its nested lists, as the toolkit does."""
    media = negotiate_accept(accept)
    if isinstance(prediction, torch.Tensor):
        prediction = prediction.detach().cpu().tolist()
    return ENCODERS[media](prediction), media
