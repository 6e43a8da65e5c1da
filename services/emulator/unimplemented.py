"""What the emulator does not do, answered as AWS answers, in the request's protocol (``services.security.refusals``:
JSON ``{"__type", "message"}`` with ``x-amzn-ErrorType``, or the query services' XML), never moto's HTML pages, so
boto3 and the SDKs raise a ``ClientError`` with a code:

- an action moto has no method for (``sagemaker:CreateCompilationJob``, ``sts:DecodeAuthorizationMessage``...):
  400 ``UnknownOperationException`` (JSON protocols) or ``InvalidAction`` (query and EC2 protocols), AWS's own
  answer for an action its endpoint does not offer, with "<service>:<Action> is not implemented by the dogops
  emulator";
- a path no route of a REST service takes (Lambda's code signing, ...): 404, the same codes;
- a part of an action that moto does not do (a ``NotImplementedError`` from inside it): 501 ``NotImplemented``
  (S3's code for it), with moto's reason;
- a request member moto cannot read as its shape's type (``"InstanceCount": "one"`` from a client that does not
  validate): 400 ``SerializationException``, as AWS answers it;
- any other failure: 500 ``InternalFailure`` (AWS's; botocore retries it as it retries AWS's), the traceback in
  the emulator's log.

Importing this module makes moto's ``call_action`` raise :class:`ActionNotImplemented` for an unknown action.
"""

import traceback
from pathlib import Path

from moto.core import parse as moto_parse
from moto.core.responses import BaseResponse
from moto.core.utils import camelcase_to_underscores, method_names_from_class
from werkzeug.wrappers import Response

from ..security import refusals

UNKNOWN_CODES = {"json": "UnknownOperationException"}  # else InvalidAction (query, EC2)


class ActionNotImplemented(NotImplementedError):
    """An action moto has no method for."""

    def __init__(self, action: str):
        super().__init__(action)
        self.action = action


def _call_action(self):
    """moto's ``call_action``; an action it has no method for raises :class:`ActionNotImplemented`."""
    try:
        return _moto_call_action(self)
    except NotImplementedError:
        action = self._get_action()
        if camelcase_to_underscores(action) in method_names_from_class(type(self)):
            raise  # part of an action that exists
        raise ActionNotImplemented(action) from None


def unknown(service: str, what: str, status: int = 400) -> Response:
    """``what`` (an action, a route) that ``service`` (a SigV4 signing name) does not offer here."""
    code = UNKNOWN_CODES.get(refusals.protocol(service), "InvalidAction")
    return refusals.error(service, status, code, f"{what} is not implemented by the dogops emulator")


def failure(service: str, error: Exception) -> Response:
    """The answer to a request whose handling by moto raised ``error``."""
    if isinstance(error, ActionNotImplemented):
        return unknown(service, f"{service}:{error.action}")
    if isinstance(error, NotImplementedError):
        return refusals.error(service, 501, "NotImplemented", f"{error} (not implemented by the dogops emulator)")
    if isinstance(error, (TypeError, ValueError)) and _raised_in(error, _PARSER):
        return refusals.error(service, 400, "SerializationException", f"A request member is not of its type: {error}")
    traceback.print_exception(error)
    return refusals.error(service, 500, "InternalFailure", f"The emulator failed on this request: {error!r}")


def _raised_in(error: Exception, path: Path) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename) == path


_PARSER = Path(moto_parse.__file__)  # moto's reader of request members
_moto_call_action = BaseResponse.call_action
BaseResponse.call_action = _call_action
