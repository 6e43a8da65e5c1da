"""The SageMaker Python SDK's configuration for the local stack, which ``dogops env`` writes.

The SDK ("intelligent defaults", v2 and v3 alike) reads a ``config.yaml`` from the path in
``SAGEMAKER_USER_CONFIG_OVERRIDE``. This one names the stack's bucket as the session's default bucket and the
stack's execution role for training jobs (and so tuning jobs) and models, and opts out of telemetry: without the
bucket, ``Session.default_bucket()`` asks STS for the account at AWS's own regional address (the SDK passes that
``endpoint_url`` explicitly, so ``AWS_ENDPOINT_URL`` cannot redirect it), and the telemetry is a request to an
AWS S3 address after every SDK call. The file holds no secret.
"""

import os
import tempfile
from pathlib import Path

import yaml

from services.stack import settings

ENV_VARIABLE = "SAGEMAKER_USER_CONFIG_OVERRIDE"


def sdk_config() -> dict:
    role = settings.sagemaker_role_arn()
    return {"SchemaVersion": "1.0", "SageMaker": {
        "PythonSDK": {"Modules": {"Session": {"DefaultS3Bucket": settings.BUCKET}, "TelemetryOptOut": True}},
        "TrainingJob": {"RoleArn": role},
        "Model": {"ExecutionRoleArn": role}}}


def write_sdk_config() -> Path:
    """Write the configuration at ``settings.sdk_config_path()`` (atomically, only when it changed); its path."""
    path = settings.sdk_config_path()
    text = "# The SageMaker Python SDK's defaults for the dogops local stack (written by `dogops env`).\n" \
        + yaml.safe_dump(sdk_config(), sort_keys=False)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return path
