"""Every environment variable the server reads, in one place, read once.

SageMaker's own names where they exist (``SAGEMAKER_*``), ``DOGOPS_*`` for the
kit's additions. Invalid values are a startup error, not a surprise later.
"""

import dataclasses
import os
from pathlib import Path

MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker Runtime's request/response limit (6 MiB)


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
    """The server's configuration."""

    base_dir: Path  # SAGEMAKER_BASE_DIR, default /opt/ml
    port: int  # SAGEMAKER_BIND_TO_PORT, default 8080
    bind_host: str  # DOGOPS_BIND_HOST, default 0.0.0.0 (all interfaces, as a container must)
    workers: int  # SAGEMAKER_MODEL_SERVER_WORKERS, default: the CPU count
    timeout: int  # SAGEMAKER_MODEL_SERVER_TIMEOUT, seconds per request, default 60
    program: str  # SAGEMAKER_PROGRAM, the handler module, default inference.py
    program_explicit: bool  # whether SAGEMAKER_PROGRAM was set
    submit_directory: str  # SAGEMAKER_SUBMIT_DIRECTORY: the handler's code, an s3:// sourcedir.tar.gz or a folder
    default_accept: str  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, default application/json
    model_data_url: str  # MODEL_DATA_URL, an s3:// model.tar.gz to fetch at start (local convenience)
    fetch_allow: tuple[str, ...]  # DOGOPS_FETCH_ALLOW: hosts, host:port or CIDRs exempt from the address check
    fetch_connect_timeout: float  # DOGOPS_FETCH_CONNECT_TIMEOUT, seconds, default 3
    fetch_read_timeout: float  # DOGOPS_FETCH_READ_TIMEOUT, seconds, default 10
    fetch_total_timeout: float  # DOGOPS_FETCH_TOTAL_TIMEOUT, seconds, default 20: the deadline of a whole fetch
    fetch_max_bytes: int  # DOGOPS_FETCH_MAX_BYTES, default 6 MiB
    max_pixels: int  # DOGOPS_MAX_IMAGE_PIXELS, decoded image size bound, default 40 megapixels

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @classmethod
    def from_env(cls) -> "Settings":
        program = os.environ.get("SAGEMAKER_PROGRAM", "")
        return cls(
            base_dir=Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")),
            port=_int("SAGEMAKER_BIND_TO_PORT", 8080),
            bind_host=os.environ.get("DOGOPS_BIND_HOST", "0.0.0.0"),
            workers=_int("SAGEMAKER_MODEL_SERVER_WORKERS", os.cpu_count() or 1),
            timeout=_int("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
            program=program or "inference.py",
            program_explicit=bool(program),
            submit_directory=os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", ""),
            default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"),
            model_data_url=os.environ.get("MODEL_DATA_URL", ""),
            fetch_allow=tuple(e.strip() for e in os.environ.get("DOGOPS_FETCH_ALLOW", "").split(",") if e.strip()),
            fetch_connect_timeout=_float("DOGOPS_FETCH_CONNECT_TIMEOUT", 3.0),
            fetch_read_timeout=_float("DOGOPS_FETCH_READ_TIMEOUT", 10.0),
            fetch_total_timeout=_float("DOGOPS_FETCH_TOTAL_TIMEOUT", 20.0),
            fetch_max_bytes=_int("DOGOPS_FETCH_MAX_BYTES", MAX_PAYLOAD),
            max_pixels=_int("DOGOPS_MAX_IMAGE_PIXELS", 40_000_000),
        )
