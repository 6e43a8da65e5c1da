"""Where a Lambda client downloads code, as AWS hands it out: a URL on this emulator (as the caller addressed it),
pre-signed with the root key for 10 minutes. ``GetFunction``'s ``Code.Location`` (``server``) and
``GetLayerVersion``'s ``Content.Location`` (``lambda_layers``) are made here."""

from urllib.parse import quote

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest

from ..security import sigv4

EXPIRES_S = 600  # as AWS's Code.Location and Content.Location


def presigned(host: str, path: str, region: str) -> str:
    """``http://<host><path>`` (``path``'s segments quoted), signed for Lambda in ``region``."""
    aws = AWSRequest(method="GET", url=f"http://{host}{quote(path)}")
    SigV4QueryAuth(sigv4.root_credentials(), "lambda", region, expires=EXPIRES_S).add_auth(aws)
    return aws.url
