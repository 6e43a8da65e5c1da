"""An emulator subprocess for the promotion tests: a bucket with two models, and boto3 pointed at it."""

import json

import boto3
import pytest

from dogops.s3upload import upload_dir
from dogops.synthetic import generate
from services.stack import settings

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
    for key, value in {**settings.emulator_env(), "AWS_ENDPOINT_URL": aws}.items():
        monkeypatch.setenv(key, value)
    return boto3.Session(region_name=settings.REGION)


def emulator_with_data(tmp_path_factory, name: str, bucket: str, data_uri: str):
    """An emulator process with a small generated data set (5 classes) under ``data_uri``; yields its URL."""
    server = emulator(tmp_path_factory.mktemp(name))
    data = tmp_path_factory.mktemp(f"{name}-data")
    generate(data, classes=5, per_class=12, size=48, seed=0)
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=bucket)
    upload_dir(data, data_uri, client=s3)
    yield server.url
    server.stop()


def role_statements(iam, role: str) -> dict[str, dict]:
    """The statements of every inline policy of ``role`` on the emulator, by Sid."""
    statements = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        statements.update({s["Sid"]: s for s in document["Statement"]})
    return statements
