"""Names and addresses the local stack shares across its processes, each overridable by environment.

Both modes (``docker compose up`` and ``dogops up``) publish the same ports on
127.0.0.1, so ``dogops env`` prints the same lines for either.
"""

import os
import secrets
import tempfile
from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ACCESS_KEY = "testing"  # the stack's root key id; its secret is the stack's own (root_secret)


def _get(name: str, default: str) -> str:
    return os.environ.get(name) or default


EMULATOR_PORT = int(_get("DOGOPS_EMULATOR_PORT", "5000"))
GATEWAY_PORT = int(_get("DOGOPS_GATEWAY_PORT", "8000"))
SERVING_PORT = int(_get("DOGOPS_SERVING_PORT", "8080"))

BUCKET = _get("DOGOPS_BUCKET", "dogops-local")
ENDPOINT_NAME = _get("DOGOPS_ENDPOINT_NAME", "dogops")
FUNCTION_NAME = _get("DOGOPS_FUNCTION_NAME", "dogops-predict")
# The emulator's table of endpoints hosted in their own model server (services.emulator.sagemaker_endpoints),
# and how long the gateway reuses an answer from it (an old server must outlive that).
HOSTING_ROUTES = "/_dogops/hosting"
HOSTING_CACHE_SECONDS = 2.0
# The endpoint statuses during which SageMaker refuses UpdateEndpoint ("Cannot update in-progress endpoint").
ENDPOINT_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
# The SageMaker execution role of training jobs and models (``bootstrap seed`` makes it; the SDK's config names it).
SAGEMAKER_ROLE = "dogops-sagemaker-local"


def emulator_url() -> str:
    """Where the gateway and the bootstrap reach the emulator (``DOGOPS_EMULATOR_URL`` or ``AWS_ENDPOINT_URL``)."""
    return (os.environ.get("DOGOPS_EMULATOR_URL") or os.environ.get("AWS_ENDPOINT_URL")
            or f"http://127.0.0.1:{EMULATOR_PORT}")


def emulator_timeout() -> float:
    """Seconds the gateway waits for the emulator to connect, then again to answer, on its own calls (signature
    secrets, IAM decisions, describes, routes): ``DOGOPS_EMULATOR_TIMEOUT``, default 10."""
    return float(_get("DOGOPS_EMULATOR_TIMEOUT", "10"))


def serving_url() -> str:
    """Where the gateway reaches the serving container that backs every endpoint."""
    return _get("DOGOPS_SERVING_URL", f"http://127.0.0.1:{SERVING_PORT}")


def gateway_url() -> str:
    """Where Lambda functions run by the gateway reach it back (SageMaker Runtime)."""
    return _get("DOGOPS_GATEWAY_URL", f"http://127.0.0.1:{GATEWAY_PORT}")


def function_url_base() -> str:
    """Where a host user reaches the gateway's function URLs (``DOGOPS_FUNCTION_URL_BASE``): the emulator names
    each ``FunctionUrl`` under it."""
    return _get("DOGOPS_FUNCTION_URL_BASE", f"http://127.0.0.1:{GATEWAY_PORT}").rstrip("/")


def state_dir() -> Path:
    """Where the native stack keeps its files, and the stack its secret (``DOGOPS_STATE_DIR``)."""
    return Path(os.environ.get("DOGOPS_STATE_DIR") or ".dogops/stack").absolute()


def sagemaker_role_arn() -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{SAGEMAKER_ROLE}"


def sdk_config_path() -> Path:
    """Where ``dogops env`` writes the SageMaker Python SDK's configuration for the stack (no secret in it)."""
    return state_dir() / "sagemaker-sdk" / "config.yaml"


def root_secret() -> str:
    """The secret of the stack's root key: ``DOGOPS_ROOT_SECRET`` (how the stack's processes and compose get it),
    else the state directory's ``root-secret``, made at random on first use (mode 0600)."""
    if os.environ.get("DOGOPS_ROOT_SECRET"):
        return os.environ["DOGOPS_ROOT_SECRET"]
    path = state_dir() / "root-secret"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".root-secret-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(30) + "\n")
        os.link(temp, path)  # atomic, and never over a secret another process made first
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)
    return path.read_text(encoding="ascii").strip()


def emulator_env() -> dict[str, str]:
    """The environment that points boto3 at the emulator with the root key (and gives the stack its secret)."""
    secret = root_secret()
    return {"AWS_ENDPOINT_URL": emulator_url(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret,
            "DOGOPS_ROOT_SECRET": secret, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


def iam_enforced() -> bool:
    """Whether the emulator and the gateway authorize requests against IAM (``DOGOPS_IAM_ENFORCE=0``: not)."""
    return os.environ.get("DOGOPS_IAM_ENFORCE", "1") != "0"


def routes_url(emulator_url: str, region: str, endpoint: str) -> str:
    """The endpoint's entry in the emulator's route table."""
    return f"{emulator_url.rstrip('/')}{HOSTING_ROUTES}/{region}/{endpoint}"
