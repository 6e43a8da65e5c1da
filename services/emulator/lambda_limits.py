"""Lambda's configuration limits that moto does not apply, refused as AWS refuses them.

- ``Environment.Variables``: 4 KB in all, measured as AWS measures them (the variables as compact JSON, in
  bytes) at ``CreateFunction`` and ``UpdateFunctionConfiguration``: 400 ``InvalidParameterValueException``
  "Lambda was unable to configure your environment variables because the environment variables you have
  provided exceeded the 4KB limit. String measured: {...}" (the message recorded from AWS's answers).
"""

import json

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.responses import LambdaResponse

ENVIRONMENT_LIMIT = 4096  # bytes


def check_environment(body: dict) -> None:
    variables = (body.get("Environment") or {}).get("Variables")
    if not isinstance(variables, dict):
        return
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > ENVIRONMENT_LIMIT:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {measured}")


def _checked(operation):
    def checked(self):
        check_environment(self.json_body)
        return operation(self)

    checked.__name__ = operation.__name__
    return checked


LambdaResponse.create_function = _checked(LambdaResponse.create_function)
LambdaResponse.update_function_configuration = _checked(LambdaResponse.update_function_configuration)
