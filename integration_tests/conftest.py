"""Fixtures for the integration suite: a running stack (started here if none is) and boto3 clients on it.

The clients are configured only through what ``dogops env`` prints, as a user's
code would be after ``eval "$(dogops env)"``.
"""

import os
import shlex
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from .stacks import BIN, ROOT, healthy, selected

NO_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})


def _whole_suite(config) -> bool:
    """Run as ``pytest integration_tests``: no file, test, ``-k`` or ``-m`` selection."""
    here = Path(__file__).resolve().parent
    return (all(Path(arg.split("::")[0]).resolve() == here for arg in config.args)
            and not config.option.keyword and not config.option.markexpr)


REHEARSALS = ("test_promote_rehearsal.py", "test_training_rehearsal.py")
# The rehearsals of promotion and of training on AWS push images to the compose stack's registry: compose only.
collect_ignore = [] if os.environ.get("STACK") == "compose" else list(REHEARSALS)


def pytest_collection_modifyitems(session, config, items):
    """The rehearsals run last: they promote what the rest of the suite has just tested."""
    items.sort(key=lambda item: any(name in item.nodeid for name in REHEARSALS))


def _record_tested(session) -> bool:
    """Record the compose images as tested when the whole suite has passed so far; whether it did."""
    if session.testsfailed or not _whole_suite(session.config) or selected().mode != "compose":
        return False
    from dogops.promote.push import docker
    from dogops.promote.tested import COMPOSE_IMAGES, RECORD, record

    record(COMPOSE_IMAGES, docker, ROOT / RECORD)
    return True


@pytest.fixture(scope="session")
def tested_images(request) -> bool:
    """Whether every test before the rehearsal passed, in a whole-suite compose run: then the images the stack
    ran are recorded as tested (``dogops promote push`` takes only those), as ``make test-compose`` does for a user."""
    return _record_tested(request.session)


def pytest_sessionfinish(session, exitstatus):
    """A compose run of the whole suite that passed records the images it ran: those ``dogops promote push`` takes."""
    if exitstatus == 0 and session.testscollected:
        _record_tested(session)


@pytest.fixture(scope="session")
def stack():
    """The stack chosen by ``STACK``; brought up (and afterwards down) by the suite only if it isn't running."""
    chosen = selected()
    started = not healthy()
    if started:
        chosen.up()
    yield chosen
    if started:
        chosen.down()


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    """The variables of ``dogops env``."""
    out = subprocess.run([str(BIN / "dogops"), "env"], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    env = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="session")
def session(stack_env) -> boto3.Session:
    return boto3.Session(aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
                         region_name=stack_env["AWS_DEFAULT_REGION"])


def client(session, stack_env, service: str, config: Config | None = None):
    """A boto3 client on the endpoint ``dogops env`` names for ``service``."""
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    url = stack_env.get(specific, stack_env["AWS_ENDPOINT_URL"])
    return session.client(service, endpoint_url=url, config=config)


@pytest.fixture(scope="session")
def s3(session, stack_env):
    return client(session, stack_env, "s3")


@pytest.fixture(scope="session")
def runtime(session, stack_env):
    return client(session, stack_env, "sagemaker-runtime", NO_RETRIES)


@pytest.fixture(scope="session")
def lambda_(session, stack_env):
    return client(session, stack_env, "lambda", NO_RETRIES)


@pytest.fixture(scope="session")
def sample_jpeg(s3, stack_env) -> bytes:
    """A test-split photo of the uploaded data set, read back from the emulator's S3."""
    bucket = stack_env["DOGOPS_BUCKET"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="data/test/")["Contents"]]
    return s3.get_object(Bucket=bucket, Key=sorted(keys)[0])["Body"].read()
