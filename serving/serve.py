"""``serve``: the SageMaker hosting contract, as ``docker run IMAGE serve`` runs it.

Usage::

    serve          # or `serve serve`; configuration only from the environment

Start-up, in the master process before any worker forks: read the settings,
fetch and unpack ``MODEL_DATA_URL`` when given (as SageMaker unpacks
``ModelDataUrl``), find the user's code (an s3 ``SAGEMAKER_SUBMIT_DIRECTORY``
fetched, else the model's ``code/``) and install its ``requirements.txt``
(``user_code``), verify the model's manifest (or find the file the PyTorch
toolkit's default ``model_fn`` loads), import and check the handler module.
Any failure there is one clear line and exit code 1. Then gunicorn runs
``SAGEMAKER_MODEL_SERVER_WORKERS`` sync workers (default: one per core); each
loads the model before it accepts a connection, so ``/ping`` answers 200 only
from a loaded model. SIGTERM drains in-flight requests within 25 s,
inside SageMaker's 30 s.
"""

import logging
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication

from training.archive import ArchiveError, extract, parse_s3_uri
from training.artifact import MANIFEST, verify_artifact

from .app import create_app
from .handlers import Handlers, Runtime, ThreadBudget
from .settings import Settings
from .toolkit_defaults import model_file
from .user_code import code_dir, install_requirements, temporary_folder

log = logging.getLogger("serve")

GRACEFUL_TIMEOUT = 25


class StartupError(RuntimeError):
    """The server cannot start: bad settings, model or handlers."""


def fetch_model_data(url: str) -> Path:
    """Download an ``s3://.../model.tar.gz`` and unpack it into a fresh directory, removed when this process ends
    (not when one of its forked workers does)."""
    import boto3

    bucket, key = parse_s3_uri(url)
    target = temporary_folder("dogops-model-")
    archive = target.with_suffix(".tar.gz")
    log.info("downloading %s", url)
    try:
        boto3.client("s3").download_file(bucket, key, str(archive))
        extract(archive, target)
    except ArchiveError as exc:
        raise StartupError(f"MODEL_DATA_URL {url} is not a safe model.tar.gz: {exc}") from None
    except Exception as exc:
        raise StartupError(f"cannot fetch MODEL_DATA_URL {url}: {type(exc).__name__}: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    return target


def prepare(settings: Settings) -> tuple[Path, Handlers]:
    """The checked model directory and handlers, or StartupError."""
    model_dir = fetch_model_data(settings.model_data_url) if settings.model_data_url else settings.model_dir
    if not model_dir.is_dir():
        raise StartupError(f"no model directory at {model_dir}: mount the model there, set SAGEMAKER_BASE_DIR, "
                           f"or set MODEL_DATA_URL=s3://.../model.tar.gz")
    code = code_dir(settings.submit_directory, model_dir)
    install_requirements(code)
    handlers = Handlers.discover(settings, model_dir, code)
    if (model_dir / MANIFEST).exists():
        verify_artifact(model_dir)
        log.info("model %s: manifest verified", model_dir)
    elif "model_fn" not in handlers.custom:
        log.info("model %s: the PyTorch toolkit's model_fn loads %s", model_dir, model_file(model_dir).name)
    return model_dir, handlers


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, model_dir: Path, handlers: Handlers):
        self.settings, self.model_dir, self.handlers = settings, model_dir, handlers
        self.budget = ThreadBudget()  # shared memory, created before the fork
        super().__init__()

    def load_config(self):
        options = {
            "bind": f"{self.settings.bind_host}:{self.settings.port}",
            "workers": self.settings.workers,
            "worker_class": "sync",
            "timeout": self.settings.timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 75,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        """Runs in each worker after the fork: load the model, then serve."""
        runtime = Runtime(self.settings, self.model_dir, self.handlers, self.budget)
        runtime.load()
        log.info("worker ready: model loaded from %s", self.model_dir)
        return create_app(runtime)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``serve`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv:
        print("usage: serve   (configured by environment variables; see README)", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        model_dir, handlers = prepare(settings)
    except Exception as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    log.info("serving on port %d with %d workers", settings.port, settings.workers)
    _Gunicorn(settings, model_dir, handlers).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
