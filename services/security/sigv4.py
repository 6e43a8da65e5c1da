"""SigV4 as AWS checks it: a request's signature recomputed with botocore's signer from the secret of the key it
names, and its date within 5 minutes of now (a pre-signed URL: before its expiry).

The canonical request is botocore's own (``SigV4Auth`` / ``S3SigV4Auth``), fed with exactly the headers the
caller signed and the hash of the body it sent, so the signer and the checker cannot drift apart. ``RootAuth``
signs the stack's own calls to the emulator's internal routes with the root key.
"""

import dataclasses
import hashlib
import hmac
import time
from calendar import timegm
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

import requests
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ..stack import settings

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300  # AWS refuses a request signed more than 5 minutes from its own clock
MAX_EXPIRES_S = 604800  # a pre-signed URL lives at most 7 days
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A refused signature: ``kind`` is one of ``malformed``, ``unknown-key``, ``invalid-token``, ``mismatch``,
    ``skewed``, ``expired``, ``content-sha256``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclasses.dataclass(frozen=True)
class Signed:
    """The SigV4 fields of a request (``Authorization`` header or pre-signed query)."""

    key: str
    date: str  # X-Amz-Date, e.g. 20261202T190000Z
    region: str
    service: str
    headers: tuple[str, ...]  # the signed header names, lower case
    signature: str
    token: str | None
    expires: int | None = None  # pre-signed only

    @property
    def presigned(self) -> bool:
        return self.expires is not None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def _scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise SignatureError("malformed", f"Credential should be scoped to a valid region, not {credential!r}.")
    return parts[0], parts[1], parts[2], parts[3]


def parse(headers: Mapping[str, str], query: str) -> Signed | None:
    """The request's SigV4 fields, None when it is not signed; ``SignatureError`` when they are malformed."""
    lower = _lower(headers)
    auth = lower.get("authorization", "")
    if auth.startswith(ALGORITHM + " "):
        fields = dict(part.strip().partition("=")[::2] for part in auth[len(ALGORITHM):].split(","))
        missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
        date = lower.get("x-amz-date") or ""
        if missing or not date:
            raise SignatureError("malformed", "Authorization header requires 'Credential', 'Signature', "
                                 "'SignedHeaders' and an 'X-Amz-Date' header.")
        key, _, region, service = _scope(fields["Credential"])
        return Signed(key, date, region, service, tuple(fields["SignedHeaders"].lower().split(";")),
                      fields["Signature"], lower.get("x-amz-security-token"))
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        if auth:
            raise SignatureError("malformed", "Only AWS4-HMAC-SHA256 signatures are accepted.")
        return None
    try:
        key, _, region, service = _scope(params["X-Amz-Credential"])
        expires = int(params["X-Amz-Expires"])
        return Signed(key, params["X-Amz-Date"], region, service,
                      tuple(params["X-Amz-SignedHeaders"].lower().split(";")), params["X-Amz-Signature"],
                      params.get("X-Amz-Security-Token"), expires)
    except (KeyError, ValueError):
        raise SignatureError("malformed", "Query-string authentication requires the X-Amz-Credential, "
                             "X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature parameters.") from None


class _Check:
    """botocore's signer, over exactly the headers the caller signed and the body hash it declared."""

    def __init__(self, signed: Signed, payload: str, secret: str):
        super().__init__(Credentials(signed.key, secret, signed.token), signed.service, signed.region)
        self._names, self._payload = signed.headers, payload

    def headers_to_sign(self, request) -> HTTPHeaders:
        picked = HTTPHeaders()
        for name in self._names:
            picked[name] = request.headers.get(name, "")
        return picked

    def payload(self, request) -> str:
        return self._payload


class _Check4(_Check, SigV4Auth):
    pass


class _CheckS3(_Check, S3SigV4Auth):  # S3's path is signed as sent, not normalised
    pass


def _signature(signed: Signed, payload: str, secret: str, method: str, raw_uri: str,
               headers: Mapping[str, str]) -> str:
    path, _, query = raw_uri.partition("?")
    if signed.presigned:
        query = "&".join(pair for pair in query.split("&") if not pair.startswith("X-Amz-Signature="))
    lower = _lower(headers)
    url = f"http://{lower.get('host', '')}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={name: lower.get(name, "") for name in signed.headers})
    request.context["timestamp"] = signed.date
    auth = (_CheckS3 if signed.service == "s3" else _Check4)(signed, payload, secret)
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)


def _check_time(signed: Signed, now: float) -> None:
    try:
        when = timegm(time.strptime(signed.date, AMZ_DATE))
    except ValueError:
        raise SignatureError("malformed", f"X-Amz-Date must be in the ISO8601 basic format, not {signed.date!r}.") \
            from None
    stamp = time.strftime(AMZ_DATE, time.gmtime(now))
    if signed.presigned:
        if not 0 < signed.expires <= MAX_EXPIRES_S:
            raise SignatureError("malformed", "X-Amz-Expires must be between 1 and 604800 seconds.")
        if now > when + signed.expires:
            raise SignatureError("expired", "Request has expired")
        if when - now > MAX_SKEW_S:
            raise SignatureError("skewed", f"Request is not valid yet: {signed.date} is later than {stamp}.")
    elif abs(now - when) > MAX_SKEW_S:
        earlier = when < now
        bound = time.strftime(AMZ_DATE, time.gmtime(now - MAX_SKEW_S if earlier else now + MAX_SKEW_S))
        raise SignatureError("skewed", f"Signature expired: {signed.date} is now "
                             f"{'earlier' if earlier else 'later'} than {bound} ({stamp} "
                             f"{'-' if earlier else '+'} 5 min.)")


def payload_hash(signed: Signed, headers: Mapping[str, str], body: bytes) -> str:
    """The body hash the signature covers: ``x-amz-content-sha256`` when signed (checked against the body unless
    unsigned or streamed), else the body's own; a pre-signed S3 URL's is ``UNSIGNED-PAYLOAD``."""
    declared = _lower(headers).get("x-amz-content-sha256")
    actual = hashlib.sha256(body).hexdigest()
    if declared is None:
        return UNSIGNED_PAYLOAD if signed.presigned and signed.service == "s3" else actual
    if declared != UNSIGNED_PAYLOAD and not declared.startswith("STREAMING-") and declared != actual:
        raise SignatureError("content-sha256", "The provided 'x-amz-content-sha256' header does not match what "
                             "was computed.")
    return declared


def verify(signed: Signed, method: str, raw_uri: str, headers: Mapping[str, str], body_sha256: str,
           secret_of: Callable[[Signed], str]) -> None:
    """Raise ``SignatureError`` when AWS would refuse this signed request. ``body_sha256`` is what
    ``payload_hash`` returned; ``secret_of`` gives the secret of the signed key (``SignatureError`` for an unknown
    key or token)."""
    if "host" not in signed.headers:
        raise SignatureError("malformed", "The 'host' header must be signed.")
    _check_time(signed, time.time())
    expected = _signature(signed, body_sha256, secret_of(signed), method, raw_uri, headers)
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError("mismatch", "The request signature we calculated does not match the signature you "
                             "provided. Check your AWS Secret Access Key and signing method. Consult the service "
                             "documentation for details.")


def check(method: str, raw_uri: str, headers: Mapping[str, str], body: bytes,
          secret_of: Callable[[Signed], str]) -> Signed | None:
    """A request's verified signature (None when it is unsigned); ``SignatureError`` when AWS would refuse it."""
    signed = parse(headers, raw_uri.partition("?")[2])
    if signed is not None:
        verify(signed, method, raw_uri, headers, payload_hash(signed, headers, body), secret_of)
    return signed


def root_credentials() -> Credentials:
    """The stack's root key and its secret."""
    return Credentials(settings.ACCESS_KEY, settings.root_secret())


class RootAuth(requests.auth.AuthBase):
    """``requests`` auth: SigV4 with the stack's root key, for the emulator's internal ``/_dogops/`` routes."""

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        aws = AWSRequest(method=prepared.method, url=prepared.url, data=body,
                         headers={k: v for k, v in prepared.headers.items() if k.lower() == "content-type"})
        SigV4Auth(root_credentials(), "dogops", settings.REGION).add_auth(aws)
        prepared.headers.update(dict(aws.headers.items()))
        return prepared
