"""Provisioned concurrency: the execution environments of the emulator's provisioned concurrency configs, kept
initialised here.

A thread reads every config from the emulator each ``POLL_SECONDS``, has the runtime keep that many initialised
workers for the version it names (an alias: the version it points to now) and reports how many are, so the
config turns ``READY`` once all are, ``FAILED`` when the function's init fails
(``services.emulator.lambda_versions``). A config deleted, or an alias
moved to another version, retires the workers it kept.
"""

import json
import logging
import threading
import time

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ..stack import settings
from . import lambda_runtime
from .lambda_runtime import Function, ServiceError

POLL_SECONDS = 1.0
CONFIGS_PATH = "/2019-09-30/dogops/provisioned-concurrency"  # the emulator's route for the gateway (root key)
log = logging.getLogger(__name__)


def _emulator(method: str, body: dict | None = None) -> requests.Response:
    url = settings.emulator_url() + CONFIGS_PATH
    data = json.dumps(body).encode() if body is not None else b""
    signed = AWSRequest(method, url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(settings.ACCESS_KEY, settings.root_secret()), "lambda", settings.REGION).add_auth(signed)
    response = requests.request(method, url, data=data, headers=dict(signed.headers), timeout=10)
    response.raise_for_status()
    return response


class Provisioner:
    """Keeps each config's workers; ``sync`` once per poll."""

    def __init__(self):
        self._kept: dict[tuple[str, str], Function] = {}

    def sync(self) -> None:
        runtime = lambda_runtime.runtime()
        wanted: dict[tuple[str, str], Function] = {}
        for config in _emulator("GET").json()["Configs"]:
            key = (config["FunctionName"], config["Qualifier"])
            try:
                fn = wanted[key] = lambda_runtime.describe(*key)
            except ServiceError as e:
                log.warning("provisioned concurrency of %s:%s: %s", *key, e.message)
                continue
            old = self._kept.get(key)
            if old is not None and old.environment_key != fn.environment_key:
                runtime.provision(old, 0)
            ready = runtime.provision(fn, config["Requested"])
            failed = ready < config["Requested"]  # short: an init failed
            if (config["Allocated"], config["Failed"]) != (ready, failed):  # a change only: the emulator journals it
                _emulator("POST", {"FunctionName": key[0], "Qualifier": key[1], "Requested": config["Requested"],
                                   "Allocated": ready, "Failed": failed})
        for key, fn in self._kept.items():
            if key not in wanted:
                runtime.provision(fn, 0)
        self._kept = wanted

    def run(self) -> None:
        failure = None
        while True:
            try:
                self.sync()
                failure = None
            except Exception as e:  # noqa: BLE001 (the thread keeps provisioning whatever one poll met)
                if str(e) != failure:  # said once, not every second while the emulator is away
                    log.warning("provisioned concurrency: %s", e)
                failure = str(e)
            time.sleep(POLL_SECONDS)


_started = threading.Lock()
_thread: threading.Thread | None = None


def start() -> None:
    """Start this process's provisioner thread, once."""
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=Provisioner().run, name="lambda-provisioner", daemon=True)
            _thread.start()
