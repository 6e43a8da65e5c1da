"""IAM enforcement across the emulator, as AWS does it: an anonymous request is refused (S3: on a bucket that
exists); every request signed with another key than the stack's
own (``testing``, the account root) is checked by moto's access control against the caller's identity-based
policies, on the resource's ARN where dogops knows it (moto checks most services on ``*``), and a request that
passes a role also needs ``iam:PassRole`` on it.

moto enforces only once ``settings.INITIAL_NO_AUTH_ACTION_COUNT`` requests were served (read from the
environment when ``moto.settings`` is imported); this module sets it to 0 and lets the root key through.
Denials are answered in the service's protocol: JSON services (SageMaker, ECR, Logs: 400; Lambda: 403)
``AccessDeniedException`` with ``x-amzn-ErrorType`` and ``{"__type", "message"}``; query services (IAM, STS,
CloudFormation) ``AccessDenied`` XML, 403; S3 its own ``AccessDenied`` XML, 403.

``DOGOPS_IAM_ENFORCE=0`` turns enforcement off (read at import, as the gateway's switch).
"""

import json
import re

from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import JsonRESTError, _RESTError
from moto.core.utils import get_service_model
from moto.iam.access_control import IAMRequest, S3IAMRequest
from moto.s3.exceptions import S3AccessDeniedError
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition
from werkzeug.exceptions import HTTPException

from ..stack import settings
from .iam_authorize import authorize, denial_message

JSON_PROTOCOLS = {"json", "rest-json", "query-json"}
JSON_CODES = {"AccessDenied": "AccessDeniedException", "InvalidClientTokenId": "UnrecognizedClientException",
              "SignatureDoesNotMatch": "InvalidSignatureException"}

# Where a request names the role it passes: (service, action) -> member names, found at any depth of the body.
PASSED_ROLES = {
    ("sagemaker", "CreateModel"): ("ExecutionRoleArn",),
    ("sagemaker", "CreateTrainingJob"): ("RoleArn",),
    ("sagemaker", "CreateHyperParameterTuningJob"): ("RoleArn",),
    ("sagemaker", "CreateProcessingJob"): ("RoleArn",),
    ("sagemaker", "CreateNotebookInstance"): ("RoleArn",),
    ("lambda", "CreateFunction"): ("Role",),
    ("lambda", "UpdateFunctionConfiguration"): ("Role",),
    ("cloudformation", "CreateStack"): ("RoleARN",),
    ("cloudformation", "UpdateStack"): ("RoleARN",),
    ("cloudformation", "CreateChangeSet"): ("RoleARN",),
    ("cloudformation", "DeleteStack"): ("RoleARN",),
    ("ecs", "RegisterTaskDefinition"): ("taskRoleArn", "executionRoleArn"),
}

# SageMaker resources by the request member that names them, the first present wins.
SAGEMAKER_RESOURCES = (("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config"),
                       ("ModelName", "model"), ("TrainingJobName", "training-job"),
                       ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
                       ("ProcessingJobName", "processing-job"), ("TransformJobName", "transform-job"))


class SignedBodyRequest(IAMRequest):
    """moto's ``IAMRequest``, hashing the body as it was signed: for an empty body that is not a form (every Lambda
    ``GET``) moto hashes its parsed parameters instead, and so refuses every such signature."""

    def _create_aws_request(self):
        aws_request = super()._create_aws_request()
        if "x-www-form-urlencoded" not in self._headers.get("Content-Type", ""):  # a form: moto's parameters are it
            aws_request.data = self._body or b""
        return aws_request


def caller_key(response) -> str | None:
    """The access key id the request is signed with (header or pre-signed query), None when unsigned."""
    match = re.search(r"Credential=([^/,\s]+)/", response.headers.get("Authorization", ""))
    if match:
        return match.group(1)
    credential = response.querystring.get("X-Amz-Credential") or [""]
    return credential[0].split("/")[0] or None


def _service(response) -> str:
    match = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", response.headers.get("Authorization", ""))
    return match.group(1) if match else ""


def _body(response) -> dict:
    """The request's JSON body as a dict (empty when it is not one), parsed once per request."""
    if "_dogops_body" not in response.__dict__:
        try:
            body = json.loads(response.body or "{}")
        except (TypeError, ValueError):
            body = {}
        response.__dict__["_dogops_body"] = body if isinstance(body, dict) else {}
    return response.__dict__["_dogops_body"]


def _param(response, name: str) -> str | None:
    value = response.querystring.get(name) or _body(response).get(name) or (response.uri_match or {}).get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def resource_arn(response, service: str) -> str:
    """The ARN the action acts on, for the services dogops deploys to; ``*`` otherwise."""
    region, account = response.region, response.current_account
    if service == "sagemaker":
        for member, kind in SAGEMAKER_RESOURCES:
            if name := _param(response, member):
                return f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}"
    elif service == "lambda":
        if name := _param(response, "FunctionName") or _param(response, "function_name"):
            name = name.split(":function:")[-1] if ":function:" in name else name
            qualifier = _param(response, "Qualifier")
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
            return f"{arn}:{qualifier}" if qualifier and ":" not in name else arn
    elif service == "logs":
        if group := _param(response, "logGroupName"):
            stream = _param(response, "logStreamName")
            return f"arn:aws:logs:{region}:{account}:log-group:{group}" + (f":log-stream:{stream}" if stream else "")
    elif service == "ecr":
        if repository := _param(response, "repositoryName"):
            return f"arn:aws:ecr:{region}:{account}:repository/{repository}"
    elif service == "cloudformation":
        if name := _param(response, "StackName"):
            return name if name.startswith("arn:") else f"arn:aws:cloudformation:{region}:{account}:stack/{name}/*"
    tagged = next((arn for member in ("ResourceArn", "resourceArn", "resource_arn") if (arn := _param(response, member))),
                  None)  # tagging and the like name the resource itself
    return tagged if tagged and tagged.startswith("arn:") else "*"


def passed_roles(response, service: str, action: str) -> list[str]:
    """The role ARNs this request passes to the service."""
    members = PASSED_ROLES.get((service, action), ())
    found = [value for name in members for value in response.querystring.get(name, [])]

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in members and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if members:
        walk(_body(response))
    return sorted(set(found))


def _protocol(response) -> str:
    try:
        return response.determine_response_protocol(get_service_model(response.boto3_service_name))
    except Exception:  # noqa: BLE001 (a service moto serves without a botocore model: query, XML)
        return "query"


def _error(response, code: str, message: str) -> HTTPException:
    """The error in the request's protocol: JSON services with ``x-amzn-ErrorType`` (400; rest-json 403), else XML."""
    protocol = _protocol(response)
    if protocol not in JSON_PROTOCOLS:
        error = _RESTError(code, message)
        error.code = 403
        return error
    code = JSON_CODES.get(code, code)
    error = JsonRESTError(code, message)
    error.code = 403 if protocol == "rest-json" else 400
    response.response_headers.update({"x-amzn-ErrorType": code, "Content-Type": "application/json"})
    return error


def _bucket_exists(response, resource: str) -> bool:
    bucket = resource.split(":::", 1)[-1].split("/", 1)[0]
    return bucket == "*" or bucket in s3_backends[response.current_account][get_partition(response.region)].buckets


def _denied(response, key: str, action: str, resource: str) -> HTTPException:
    token = response.headers.get("X-Amz-Security-Token")
    answer = authorize(key, action, resource, token, response.region)
    message = answer.get("message") or denial_message(answer["principal"], action, resource, answer["decision"])
    return _error(response, "AccessDenied", message)


def _check(self, iam_request_cls: type, resource: str = "*") -> None:
    """moto's check, for every key but the root's, on the resource's ARN, then ``iam:PassRole``; AWS's errors."""
    key = caller_key(self)
    if key == settings.ACCESS_KEY or self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    s3 = iam_request_cls is S3IAMRequest
    if key is not None and not settings.iam_enforced():
        return  # (its signature is verified in front of moto either way)
    if key is None or "Authorization" not in self.headers:  # anonymous (refused even unenforced), or pre-signed
        if not s3:
            raise _error(self, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if _bucket_exists(self, resource) or self.method not in ("GET", "HEAD"):  # reading a missing bucket:
            raise S3AccessDeniedError()  # moto answers NoSuchBucket, as S3 does whoever asks
        return
    if s3:
        return _moto_check(self, iam_request_cls, resource)
    service, action = _service(self), self._get_action()
    if resource == "*":
        resource = resource_arn(self, service)
    try:
        _moto_check(self, SignedBodyRequest if iam_request_cls is IAMRequest else iam_request_cls, resource)
    except _RESTError as exc:
        if exc.error_type == "AccessDenied":
            raise _denied(self, key, f"{service}:{action}", resource) from None
        raise _error(self, exc.error_type, exc.message) from None
    for role in passed_roles(self, service, action):
        if not authorize(key, "iam:PassRole", role, self.headers.get("X-Amz-Security-Token"), self.region)["allowed"]:
            raise _denied(self, key, "iam:PassRole", role)


_moto_check = ActionAuthenticatorMixin._authenticate_and_authorize_action


def install() -> None:
    """Enforce from the first request (moto's own counter would wait ``INITIAL_NO_AUTH_ACTION_COUNT`` requests)."""
    if settings.iam_enforced():
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin._authenticate_and_authorize_action = _check


install()
