"""Names and addresses the local stack shares across its processes, each overridable by environment.

Both modes (``docker compose up`` and ``dogops up``) publish the same ports on
127.0.0.1, so ``dogops env`` prints the same lines for either.
"""

import os

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ACCESS_KEY = SECRET_KEY = "testing"  # the emulator's credentials; nothing real


def _get(name: str, default: str) -> str:
    return os.environ.get(name) or default


EMULATOR_PORT = int(_get("DOGOPS_EMULATOR_PORT", "5000"))
GATEWAY_PORT = int(_get("DOGOPS_GATEWAY_PORT", "8000"))
SERVING_PORT = int(_get("DOGOPS_SERVING_PORT", "8080"))

BUCKET = _get("DOGOPS_BUCKET", "dogops-local")
ENDPOINT_NAME = _get("DOGOPS_ENDPOINT_NAME", "dogops")
FUNCTION_NAME = _get("DOGOPS_FUNCTION_NAME", "dogops-predict")


def emulator_url() -> str:
    """Where the gateway and the bootstrap reach the emulator (``DOGOPS_EMULATOR_URL`` or ``AWS_ENDPOINT_URL``)."""
    return (os.environ.get("DOGOPS_EMULATOR_URL") or os.environ.get("AWS_ENDPOINT_URL")
            or f"http://127.0.0.1:{EMULATOR_PORT}")


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


def emulator_env() -> dict[str, str]:
    """The environment that points boto3 at the emulator."""
    return {"AWS_ENDPOINT_URL": emulator_url(), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


def iam_enforced() -> bool:
    """Whether the emulator and the gateway authorize requests against IAM (``DOGOPS_IAM_ENFORCE=0``: not)."""
    return os.environ.get("DOGOPS_IAM_ENFORCE", "1") != "0"
