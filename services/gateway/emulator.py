"""What the gateway asks the emulator, shared by its data planes: boto3 clients, answers reused a moment,
and the caller's SigV4 credential."""

import threading
import time
from collections.abc import Callable, Hashable

import boto3
from botocore.config import Config
from flask import request

from ..stack import settings

_clients: dict[tuple[str, str], object] = {}
_clients_lock = threading.Lock()


def client(service: str, region: str = settings.REGION):
    """A boto3 client on the emulator, made once and shared by every thread (making one is not thread-safe,
    using one is)."""
    with _clients_lock:
        if (service, region) not in _clients:
            _clients[(service, region)] = boto3.session.Session().client(
                service, endpoint_url=settings.emulator_url(), region_name=region,
                aws_access_key_id=settings.ACCESS_KEY, aws_secret_access_key=settings.root_secret(),
                config=Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=64,
                              connect_timeout=settings.emulator_timeout(), read_timeout=settings.emulator_timeout()))
        return _clients[(service, region)]


class Recent:
    """Answers reused for ``seconds`` (an error is never kept); at most ``size`` kept before starting over."""

    def __init__(self, seconds: float, size: int = 4096):
        self.seconds, self.size = seconds, size
        self._items: dict[Hashable, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], object]):
        with self._lock:
            hit = self._items.get(key)
        if hit and time.monotonic() - hit[0] < self.seconds:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)
        return value


def signed_key() -> str | None:
    """The access key id of the request's verified SigV4 signature, or None when unsigned."""
    signed = request.environ.get("dogops.signed")
    return signed.key if signed else None


def signed_region() -> str:
    """The region the caller signed for (SigV4 credential scope), else the stack's."""
    signed = request.environ.get("dogops.signed")
    return signed.region if signed else settings.REGION
