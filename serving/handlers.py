"""Finding the handler functions and running one request through them.

As in the SageMaker inference toolkit: the module is ``SAGEMAKER_PROGRAM``
(default ``inference.py``) from the user's code (``user_code``: an s3
``SAGEMAKER_SUBMIT_DIRECTORY`` fetched, else the model's ``code/`` folder),
else from the Python path when named explicitly. Functions it lacks (all of them when there
is no module) are the model's defaults: for a dogops artifact (it has a
manifest) the dog-photo handlers of ``serving.inference``, for any other model
the PyTorch inference toolkit's (``serving.toolkit_defaults``). Each function
may take one extra trailing ``context`` argument; ``transform_fn`` replaces
the other three and may not be mixed with them. Everything is checked at
start-up, so a broken handler module is a start-up error, not a 500 on the
first request.
"""

import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import multiprocessing
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import torch

from training.artifact import MANIFEST

from . import inference, toolkit_defaults
from .errors import BadRequest
from .settings import Settings

log = logging.getLogger(__name__)

ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}


class HandlerError(RuntimeError):
    """The handler module is missing or its functions break the contract."""


@dataclasses.dataclass
class Context:
    """The optional ``context`` argument: the model dir and this request's headers."""

    model_dir: str
    request_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    response_headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def system_properties(self) -> dict:
        gpu = 0 if torch.cuda.is_available() else None
        return {"model_dir": self.model_dir, "gpu_id": gpu, "batch_size": 1, "server_name": "dogops"}

    @property
    def custom_attributes(self) -> str:
        return self.request_headers.get("X-Amzn-SageMaker-Custom-Attributes", "")

    def get_request_header(self, idx: int, key: str) -> str | None:
        """TorchServe-style accessor (``idx`` is always 0: one request at a time)."""
        return self.request_headers.get(key)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = value


def _import_program(settings: Settings, code: Path) -> ModuleType | None:
    name = settings.program.removesuffix(".py")
    path = code / f"{name}.py"
    if path.exists():
        sys.path.insert(0, str(path.parent))  # its sibling modules import as on SageMaker
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        log.info("handlers from %s", path)
        return module
    if settings.program_explicit:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise HandlerError(f"SAGEMAKER_PROGRAM={settings.program}: no {path} and no module {name!r} "
                               f"on the Python path ({exc})") from None
    return None


def _bind(fn, name: str):
    """Wrap ``fn`` so it is always called as ``fn(*args, context)``, passing context only if declared."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    base = ARITY[name]
    if len(params) == base + 1:
        return fn
    if len(params) == base:
        return lambda *args: fn(*args[:-1])
    raise HandlerError(f"{name} must take {base} arguments, or {base + 1} with a trailing context; "
                       f"{getattr(fn, '__module__', '?')}.{name} takes {len(params)}")


class Handlers:
    """The resolved handler functions, each callable as ``fn(*args, context)``."""

    def __init__(self, module: ModuleType | None, defaults: ModuleType):
        own = {name: getattr(module, name) for name in ARITY if callable(getattr(module, name, None))}
        if "transform_fn" in own and own.keys() & {"input_fn", "predict_fn", "output_fn"}:
            raise HandlerError("transform_fn cannot be combined with input_fn, predict_fn or output_fn")
        self.custom = set(own)
        # the defaults' output_fn can refuse a bad Accept before the work is done
        self.negotiate_accept = None if own.keys() & {"output_fn", "transform_fn"} else defaults.negotiate_accept
        fns = {name: own.get(name, getattr(defaults, name, None)) for name in ARITY}
        self.model_fn = _bind(fns["model_fn"], "model_fn")
        self.input_fn = _bind(fns["input_fn"], "input_fn")
        self.predict_fn = _bind(fns["predict_fn"], "predict_fn")
        self.output_fn = _bind(fns["output_fn"], "output_fn")
        self.transform_fn = _bind(own["transform_fn"], "transform_fn") if "transform_fn" in own else None

    @classmethod
    def discover(cls, settings: Settings, model_dir: Path, code: Path | None = None) -> "Handlers":
        """The handlers for the model in ``model_dir``, the module from ``code`` (default: its ``code/``)."""
        sys.dont_write_bytecode = True  # /opt/ml/model is read-only: no __pycache__ there
        defaults = inference if (model_dir / MANIFEST).exists() else toolkit_defaults
        return cls(_import_program(settings, code or model_dir / "code"), defaults)


class ThreadBudget:
    """Shares the CPU cores among the requests running in all workers at once.

    One request alone gets every core's thread (lowest latency); under load each
    of N concurrent requests gets cores/N (no oversubscription, best throughput).
    A request counts from its first byte decoded to its last encoded, so a forward
    pass that starts while another worker is decoding does not take that worker's
    core. The counter lives in shared memory created before gunicorn forks.
    """

    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1
        self.busy = multiprocessing.Value("i", 0)

    @contextlib.contextmanager
    def claim(self):
        """Count this request as running, in every worker, until it ends."""
        with self.busy.get_lock():
            self.busy.value += 1
        try:
            yield
        finally:
            with self.busy.get_lock():
                self.busy.value -= 1

    def share(self) -> None:
        """Set this worker's torch threads to its share of the cores, as things stand now."""
        torch.set_num_threads(max(1, self.cores // max(1, self.busy.value)))


class Runtime:
    """A loaded model and its handlers: what one worker process serves."""

    def __init__(self, settings: Settings, model_dir: Path, handlers: Handlers, budget: ThreadBudget):
        self.settings, self.model_dir, self.handlers, self.budget = settings, Path(model_dir), handlers, budget
        self.model = None

    def load(self) -> None:
        self.model = self.handlers.model_fn(str(self.model_dir), Context(str(self.model_dir)))

    @property
    def ready(self) -> bool:
        return self.model is not None

    def invoke(self, body: bytes, content_type: str, accept: str, context: Context) -> tuple[bytes, str]:
        """One request through the handlers; returns the body and its content type."""
        if not accept or accept.strip() == "*/*":
            accept = self.settings.default_accept
        if self.handlers.negotiate_accept:
            self.handlers.negotiate_accept(accept)  # refuse a bad Accept before doing the work
        if content_type in toolkit_defaults.UTF8_TYPES:
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"the {content_type} body is not UTF-8") from None
        h = self.handlers
        with self.budget.claim():
            if h.transform_fn is not None:
                self.budget.share()
                result = h.transform_fn(self.model, body, content_type, accept, context)
            else:
                data = h.input_fn(body, content_type, context)
                self.budget.share()
                prediction = h.predict_fn(data, self.model, context)
                result = h.output_fn(prediction, accept, context)
        out, out_type = result if isinstance(result, tuple) else (result, accept)
        return out.encode("utf-8") if isinstance(out, str) else bytes(out), out_type
