"""Where a command's AWS calls go, the local stack or AWS, decided from each boto3 client's resolved endpoint
(botocore's ``client.meta.endpoint_url``, whatever set it: ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``,
``endpoint_url`` in ``~/.aws/config``, or botocore's own rules), not from the environment alone; and as whom.

A command that connects (``connect``) resolves every service the promotion commands call before it calls any:
all must reach the local stack (a loopback address, ``localhost``, a compose service's one-label name) or all
AWS (a domain of one of botocore's partitions: ``amazonaws.com``, ``api.aws``, ...), and the one ``--aws`` asks
for; a command whose clients disagree is refused. The session it returns refuses any later client that resolves
elsewhere. The target (account, region, the caller's ARN from STS ``GetCallerIdentity``) is printed first, on
stderr (stdout stays the command's answer: ``URI=$(dogops promote push ...)``, ``--json``).
"""

import ipaddress
import logging
import sys
from dataclasses import asdict, dataclass
from functools import cache
from urllib.parse import urlparse

import boto3
import botocore.session
from botocore.loaders import create_loader

LOCAL, AWS = "local", "aws"
NAMES = {LOCAL: "the local stack", AWS: "AWS", None: "neither the local stack nor AWS"}
# What `dogops promote`, `destroy` and `status --aws` call; each is resolved before any call is made.
SERVICES = ("sts", "s3", "cloudformation", "sagemaker", "ecr", "iam", "lambda", "logs", "resourcegroupstaggingapi",
            "ec2", "ssm")
TO_LOCAL = 'eval "$(dogops env)" to point every service at the local stack'
TO_AWS = "unset AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (and endpoint_url in ~/.aws/config) to reach AWS"


@cache
def _loader(data_path: str | None):
    """botocore's data loader, shared by the sessions of this process: each service model is read once."""
    return create_loader(data_path)


@cache
def _aws_domains() -> tuple[str, ...]:
    """The DNS suffixes of AWS's partitions, as botocore knows them (``amazonaws.com``, ``api.aws``, China's, ...)."""
    partitions = _loader(None).load_data("partitions")["partitions"]
    return tuple(sorted({p["outputs"][key] for p in partitions for key in ("dnsSuffix", "dualStackDnsSuffix")}))


def place(url: str | None) -> str | None:
    """``LOCAL`` for the local stack's hosts (loopback, ``localhost``, a one-label compose service name such as
    ``emulator``), ``AWS`` for AWS's domains, else None."""
    host = (urlparse(url or "").hostname or "").lower().rstrip(".")
    if any(host.endswith("." + domain) for domain in _aws_domains()):
        return AWS
    if host == "localhost" or host.endswith(".localhost") or (host and "." not in host and ":" not in host):
        return LOCAL
    try:
        return LOCAL if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """Where one command's calls go (``where``: ``"local"`` or ``"aws"``) and as whom."""

    where: str
    account: str
    region: str
    identity: str  # the caller's ARN
    endpoints: dict[str, str]  # service -> resolved endpoint URL

    def __str__(self) -> str:
        hosts = sorted({urlparse(url).netloc for url in self.endpoints.values()})
        where = "AWS" if self.where == AWS else f"the local stack ({', '.join(hosts)})"
        return f"{where}, account {self.account}, region {self.region}, as {self.identity}"

    def document(self) -> dict:
        return asdict(self)


class Session(boto3.Session):
    """A boto3 session whose clients must all reach ``target.where`` once ``target`` is set: a client that resolves
    elsewhere is refused as it is made."""

    target: Target | None = None

    def client(self, *args, **kwargs):
        client = super().client(*args, **kwargs)
        if self.target is not None:
            found = place(client.meta.endpoint_url)
            if found != self.target.where:
                raise SystemExit(f"{client.meta.service_model.service_name} resolves to {client.meta.endpoint_url} "
                                 f"({NAMES[found]}), but this command reaches {NAMES[self.target.where]}: "
                                 f"{TO_LOCAL if self.target.where == LOCAL else TO_AWS}")
        return client


def _listing(endpoints: dict[str, str]) -> str:
    """``URL (service, ...)`` for each URL of ``endpoints`` (service -> URL)."""
    services: dict[str, list[str]] = {}
    for service, url in sorted(endpoints.items()):
        services.setdefault(url, []).append(service)
    return ", ".join(f"{url} ({', '.join(names)})" for url, names in sorted(services.items()))


def check(endpoints: dict[str, str], aws: bool | None) -> str:
    """Where ``endpoints`` (service -> URL) all go; ``SystemExit`` saying why when they do not all go to one place,
    or (``aws`` True or False) not to the one asked for."""
    places: dict[str | None, dict[str, str]] = {}
    for service, url in endpoints.items():
        places.setdefault(place(url), {})[service] = url
    if None in places:
        raise SystemExit(f"{_listing(places[None])}: neither a local endpoint (loopback, localhost, a compose "
                         "service) nor AWS (amazonaws.com, api.aws or another AWS partition's domain)")
    if len(places) > 1:
        raise SystemExit("this command's AWS clients disagree, so it stops before any call: " + "; ".join(
            f"{NAMES[where]}: {_listing(found)}" for where, found in sorted(places.items())) + f". {TO_LOCAL}, or "
            f"{TO_AWS}")
    (where,) = places
    if aws and where == LOCAL:
        raise SystemExit(f"--aws, but every endpoint resolves to the local stack ({_listing(endpoints)}): {TO_AWS}")
    if aws is False and where == AWS:
        raise SystemExit(f"every endpoint resolves to AWS: pass --aws to act on AWS, or {TO_LOCAL}")
    return where


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def connect(region: str, aws: bool | None, echo=_to_stderr) -> Session:
    """A session in ``region`` checked to reach the local stack or AWS with every client (``aws``: which one must;
    None: either, as they resolve), after ``echo`` printed the target. ``SystemExit`` when the clients disagree."""
    logging.getLogger("botocore").setLevel(logging.WARNING)  # not which credentials and endpoints it found
    core = botocore.session.get_session()
    core.register_component("data_loader", _loader(core.get_config_variable("data_path")))
    session = Session(botocore_session=core, region_name=region)
    endpoints = {service: session.client(service).meta.endpoint_url for service in SERVICES}
    where = check(endpoints, aws)
    caller = session.client("sts").get_caller_identity()
    session.target = Target(where, caller["Account"], session.region_name, caller["Arn"], endpoints)
    echo(f"target: {session.target}")
    return session
