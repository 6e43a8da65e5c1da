"""boto3 clients on the stack's emulator, signed with its root key, made once per service, region and URL and
shared by every thread (making one is not thread-safe, using one is)."""

import threading

import boto3
from botocore.config import Config

from ..stack import settings

_clients: dict[tuple[str, str, str], object] = {}
_lock = threading.Lock()


def root_client(service: str, region: str = settings.REGION, url: str | None = None):
    """A client of ``service`` on the emulator at ``url`` (default: the stack's)."""
    url = url or settings.emulator_url()
    with _lock:
        if (service, region, url) not in _clients:
            _clients[(service, region, url)] = boto3.session.Session().client(
                service, endpoint_url=url, region_name=region, aws_access_key_id=settings.ACCESS_KEY,
                aws_secret_access_key=settings.root_secret(),
                config=Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=16))
        return _clients[(service, region, url)]
