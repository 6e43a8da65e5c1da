"""The prediction function on Lambda, least privilege, with the boto3 calls AWS takes.

An execution role that Lambda may assume and that may only invoke the one
endpoint and write the function's own logs; CreateFunction, or
UpdateFunctionCode and UpdateFunctionConfiguration when it exists; reserved
concurrency; and a resource policy that lets only API Gateway's ``POST /predict``
of the same account call it. ``AWS_ENDPOINT_URL`` points the same calls at the
local emulator.
"""

import json
import logging

import boto3

from .iam_propagation import ROLE_NOT_ASSUMABLE, while_propagating

log = logging.getLogger(__name__)

HANDLER = "lambda_function.lambda_handler"
RUNTIME = "python3.11"  # the local stack runs this minor (tests exercise the function on it)
TIMEOUT = 90  # seconds: over the endpoint's 60 s, so its own timeout error reaches the caller
MEMORY = 256  # MB
RESERVED_CONCURRENCY = 3
TRUST_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
POLICY_NAME = "invoke-endpoint-and-log"
API_GATEWAY_SID = "api-gateway-predict"


def role_policy(endpoint_arn: str, log_group_arn: str) -> dict:
    """Invoke this endpoint, write this function's logs; nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeTheEndpoint", "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
         "Resource": endpoint_arn},
        {"Sid": "CreateTheLogGroup", "Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": log_group_arn},
        {"Sid": "WriteTheLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"}]}


def ensure_role(name: str, policy: dict, iam=None, trust: dict = TRUST_POLICY, policy_name: str = POLICY_NAME,
                description: str = "dogops prediction function") -> str:
    """Create the execution role if needed (trusting ``trust``'s service), (re)write its trust policy and inline
    policy; return its ARN."""
    iam = iam or boto3.client("iam")
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                              Description=description)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    return arn


def _until_role_usable(call):
    """``call()``, retried for up to 30 s while Lambda cannot assume the role just written (``iam_propagation``)."""
    return while_propagating(call, ROLE_NOT_ASSUMABLE, "role", within_s=30, echo=log.info)


def deploy_function(name: str, endpoint: str, package: bytes, sha256: str) -> dict:
    """Deploy ``package`` as function ``name`` calling ``endpoint``; return its ARN, role and code hash."""
    endpoint_arn = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointArn"]
    _, _, _, region, account, _ = endpoint_arn.split(":", 5)
    role = ensure_role(f"{name}-role", role_policy(
        endpoint_arn, f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{name}"))
    config = {"Role": role, "Handler": HANDLER, "Runtime": RUNTIME, "Timeout": TIMEOUT, "MemorySize": MEMORY,
              "Environment": {"Variables": {"ENDPOINT_NAME": endpoint}},
              "Description": f"top-5 dog breeds from SageMaker endpoint {endpoint}"}
    lam = boto3.client("lambda")
    try:
        current = lam.get_function(FunctionName=name)["Configuration"]
    except lam.exceptions.ResourceNotFoundException:
        current = None
    if current is None:
        arn = _until_role_usable(lambda: lam.create_function(
            FunctionName=name, Code={"ZipFile": package}, PackageType="Zip", **config))["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        log.info("created function %s", name)
    else:
        arn = current["FunctionArn"]
        if current["CodeSha256"] != sha256:
            lam.update_function_code(FunctionName=name, ZipFile=package)
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        _until_role_usable(lambda: lam.update_function_configuration(FunctionName=name, **config))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        log.info("updated function %s", name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=RESERVED_CONCURRENCY)
    _allow_api_gateway(lam, name, f"arn:aws:execute-api:{region}:{account}:*/*/POST/predict")
    return {"function": name, "arn": arn, "role": role, "code_sha256": sha256}


def _allow_api_gateway(lam, name: str, source_arn: str) -> None:
    try:
        statements = json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
    except lam.exceptions.ResourceNotFoundException:
        statements = []
    if not any(statement.get("Sid") == API_GATEWAY_SID for statement in statements):
        lam.add_permission(FunctionName=name, StatementId=API_GATEWAY_SID, Action="lambda:InvokeFunction",
                           Principal="apigateway.amazonaws.com", SourceArn=source_arn)
