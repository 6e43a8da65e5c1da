"""An emulator subprocess for the promotion tests: a bucket with two models, and boto3 pointed at it."""

import boto3
import pytest

from services import stack

from ..services.processes import client, emulator

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-serving@sha256:" + "a" * 64
BUCKET = "dogops-promote-test"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """An emulator with a bucket holding two models; yields its URL."""
    server = emulator(tmp_path_factory.mktemp("promote"))
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    for prefix in ("one", "two"):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/model.tar.gz", Body=b"m" * 1000)
    yield server.url
    server.stop()


@pytest.fixture
def session(aws, monkeypatch):
    """A boto3 session on the emulator (the environment points there too, as `eval "$(dogops env)"` does)."""
    for key, value in {**stack.emulator_env(), "AWS_ENDPOINT_URL": aws}.items():
        monkeypatch.setenv(key, value)
    return boto3.Session(region_name=stack.REGION)
