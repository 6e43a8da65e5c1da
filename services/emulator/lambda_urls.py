"""What moto's Lambda function URLs lack; importing this module patches it in (``cloudformation`` does).

- a URL per qualifier (``$LATEST``, i.e. none, or an alias), as on AWS; moto keeps one per function and
  ignores ``Qualifier``;
- ``ListFunctionUrlConfigs`` (``GET /2021-10-31/functions/<name>/urls``), which moto has no route for;
- the ``FunctionUrl`` is the local gateway's: ``<DOGOPS_FUNCTION_URL_BASE>/lambda-url/<url-id>/`` (default
  ``http://127.0.0.1:8000``, ``services.stack``), which a host user can call; moto's names AWS's domain.
"""

import json
import re
import uuid
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls
from moto.awslambda.exceptions import (
    GenericResourcNotFound,
    InvalidParameterValueException,
    LambdaClientError,
    UnknownAliasException,
)
from moto.awslambda.models import FunctionUrlConfig, LambdaBackend, LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.core.utils import utcnow

from ..stack import settings


class UrlConflict(LambdaClientError):
    code = 409

    def __init__(self, arn: str):
        super().__init__("ResourceConflictException", f"Failed to create function url config for [functionArn = "
                                                      f"{arn}]. Error message:  FunctionUrlConfig exists for this "
                                                      "Lambda function")


def _now() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _init(self: FunctionUrlConfig, function: LambdaFunction, config: dict[str, Any], qualifier: str | None = None
          ) -> None:
    self.function, self.config, self.qualifier = function, config, qualifier
    self.url_id = uuid.uuid4().hex
    self.url = f"{settings.function_url_base()}/lambda-url/{self.url_id}/"
    self.created = self.last_modified = _now()


def _to_dict(self: FunctionUrlConfig) -> dict[str, Any]:
    arn = self.function.function_arn + (f":{self.qualifier}" if getattr(self, "qualifier", None) else "")
    answer = {"FunctionUrl": self.url, "FunctionArn": arn, "AuthType": self.config.get("AuthType"),
              "CreationTime": self.created, "LastModifiedTime": self.last_modified,
              "InvokeMode": self.config.get("InvokeMode") or "BUFFERED"}
    if self.config.get("Cors"):
        answer["Cors"] = self.config["Cors"]
    return answer


def _update(self: FunctionUrlConfig, new_config: dict[str, Any]) -> None:
    for key in ("AuthType", "Cors", "InvokeMode"):
        if new_config.get(key) is not None:
            self.config[key] = new_config[key]
    self.last_modified = _now()


FunctionUrlConfig.__init__ = _init
FunctionUrlConfig.to_dict = _to_dict
FunctionUrlConfig.update = _update


def configs(function: LambdaFunction) -> dict[str | None, FunctionUrlConfig]:
    """A function's URL configs by qualifier (None: unqualified)."""
    if not hasattr(function, "url_configs"):
        function.url_configs = {}
    return function.url_configs


def _target(backend: LambdaBackend, name_or_arn: str, qualifier: str | None) -> tuple[LambdaFunction, str | None]:
    """The function (its ``$LATEST``, where URL configs live) and the qualifier, which must be an alias."""
    name_or_arn = unquote(name_or_arn)
    if name_or_arn.startswith("arn:"):
        _, name, named = backend._lambdas.split_function_arn(name_or_arn)
    else:
        name, _, named = name_or_arn.partition(":")
    qualifier = named or qualifier
    if qualifier == "$LATEST":
        qualifier = None
    function = backend._lambdas.get_function_by_name_or_arn_forbid_qualifier(name)
    if qualifier is not None:
        if re.fullmatch(r"\d+", qualifier):
            raise InvalidParameterValueException("A function URL can be created for an alias or $LATEST, "
                                                 "not a version.")
        if qualifier not in backend._lambdas._get_function_aliases(name):
            raise UnknownAliasException(f"{function.function_arn}:{qualifier}")
    return function, qualifier


def create_url(backend: LambdaBackend, name_or_arn: str, qualifier: str | None, config: dict) -> FunctionUrlConfig:
    function, qualifier = _target(backend, name_or_arn, qualifier)
    if qualifier in configs(function):
        raise UrlConflict(configs(function)[qualifier].to_dict()["FunctionArn"])
    url = configs(function)[qualifier] = FunctionUrlConfig(function, dict(config), qualifier)
    return url


def get_url(backend: LambdaBackend, name_or_arn: str, qualifier: str | None) -> FunctionUrlConfig:
    function, qualifier = _target(backend, name_or_arn, qualifier)
    if qualifier not in configs(function):
        raise GenericResourcNotFound()
    return configs(function)[qualifier]


def delete_url(backend: LambdaBackend, name_or_arn: str, qualifier: str | None) -> None:
    function, qualifier = _target(backend, name_or_arn, qualifier)
    if configs(function).pop(qualifier, None) is None:
        raise GenericResourcNotFound()


def _qualifier(self: LambdaResponse) -> str | None:
    return self.querystring.get("Qualifier", [None])[0]


def _name(self: LambdaResponse) -> str:
    return self.path.rstrip("/").split("/")[-2]


def _create(self: LambdaResponse):
    config = create_url(self.backend, _name(self), _qualifier(self), self.json_body)
    return 201, {"status": 201}, json.dumps(config.to_dict())


def _get(self: LambdaResponse):
    return 200, {"status": 200}, json.dumps(get_url(self.backend, _name(self), _qualifier(self)).to_dict())


def _put(self: LambdaResponse):
    config = get_url(self.backend, _name(self), _qualifier(self))
    config.update(self.json_body)
    return 200, {"status": 200}, json.dumps(config.to_dict())


def _delete(self: LambdaResponse):
    delete_url(self.backend, _name(self), _qualifier(self))
    return 204, {"status": 204}, ""


def _list(self: LambdaResponse):
    function, _ = _target(self.backend, _name(self), None)
    found = sorted(configs(function).values(), key=lambda c: c.qualifier or "")
    return 200, {"status": 200}, json.dumps({"FunctionUrlConfigs": [c.to_dict() for c in found]})


LambdaResponse.create_function_url_config = _create
LambdaResponse.get_function_url_config = _get
LambdaResponse.update_function_url_config = _put
LambdaResponse.delete_function_url_config = _delete
LambdaResponse.list_function_url_configs = _list
urls.url_paths[r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/urls/?$"] = \
    LambdaResponse.dispatch
