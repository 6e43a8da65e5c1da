"""``dogops promote push`` without Docker: a real emulator (ECR pointed at a stand-in registry) and a fake
docker CLI; the refusals (an OCI manifest, a non-amd64 image) and where the push goes."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from dogops.promote.config import load_stage
from dogops.promote.push import PushRefused, login, push
from dogops.promote.tested import record
from services.stack import settings

from ..services.processes import Process, client

OCI = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "b" * 64


class _Manifests(BaseHTTPRequestHandler):
    """A registry that stores only OCI manifests."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", OCI)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def session(registry, tmp_path_factory):
    server = Process("services.emulator", tmp_path_factory.mktemp("push"), DOGOPS_REGISTRY_URL=f"http://{registry}/")
    yield boto3.Session(region_name=settings.REGION, aws_access_key_id=settings.ACCESS_KEY,
                        aws_secret_access_key=settings.root_secret()), server.url
    server.stop()


class FakeDocker:
    """Records its calls; ``image inspect`` answers the platform, or the digests pushed so far."""

    def __init__(self, platform: str):
        self.platform, self.calls, self.digests = platform, [], [f"other/image@sha256:{'0' * 64}"]

    def __call__(self, *args, stdin=None) -> str:
        self.calls.append(args)
        if args[0] == "push":
            self.digests.append(f"{args[1].rsplit(':', 1)[0]}@{DIGEST}")
        if args[:2] == ("image", "inspect"):
            if args[3] == "{{.Id}}":
                return f"sha256:{'1' * 64}\n"
            return self.platform if "{{.Os}}" in args[3] else json.dumps(self.digests)
        return ""


def test_an_oci_manifest_is_refused_after_the_push_to_the_token_s_registry(registry, session, monkeypatch):
    boto, url = session
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    docker = FakeDocker("linux/amd64")
    with pytest.raises(PushRefused, match="manifest type 'application/vnd.oci.image.manifest.v1\\+json'"):
        push("dogops-serving:dev", "dogops-dev/serving", "dev", load_stage("dev"), boto, docker, force=True)
    uri = f"{registry}/dogops-dev/serving"
    assert ("login", "--username", "AWS", "--password-stdin", registry) in docker.calls
    assert ("push", f"{uri}:dev") in docker.calls
    ecr = client("ecr", url)
    repo = ecr.describe_repositories(repositoryNames=["dogops-dev/serving"])["repositories"][0]
    assert repo["repositoryUri"] == uri
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"project": "dogops", "stage": "dev"}


def test_a_non_amd64_image_is_refused_before_anything_is_pushed(session, monkeypatch):
    boto, url = session
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    docker = FakeDocker("linux/arm64")
    with pytest.raises(PushRefused, match="linux/arm64, not linux/amd64"):
        push("dogops-serving:dev", "dogops-dev/arm", "dev", load_stage("dev"), boto, docker, force=True)
    assert len(docker.calls) == 1
    assert "dogops-dev/arm" not in [r["repositoryName"] for r in client("ecr", url).describe_repositories()[
        "repositories"]]


def test_only_an_image_the_compose_suite_passed_against_is_pushed(session, monkeypatch, tmp_path):
    boto, url = session
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    stage = load_stage("dev")
    monkeypatch.chdir(tmp_path)  # the record lives in ./.dogops
    docker = FakeDocker("linux/arm64")
    with pytest.raises(PushRefused, match="has not passed `STACK=compose pytest integration_tests`"):
        push("dogops-serving:dev", "dogops-dev/untested", "dev", stage, boto, docker)
    assert [call[:2] for call in docker.calls] == [("image", "inspect")]  # nothing but the id was asked, once
    record(("dogops-serving:dev",), docker)
    with pytest.raises(PushRefused, match="not linux/amd64"):  # recorded: on to the next check
        push("dogops-serving:dev", "dogops-dev/untested", "dev", stage, boto, docker)


def test_login_refuses_a_registry_the_token_is_not_for(registry, session, monkeypatch):
    boto, url = session
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    docker = FakeDocker("linux/amd64")
    elsewhere = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/dogops-dev/serving@{DIGEST}"
    with pytest.raises(PushRefused, match=f"is not on the registry http://{registry}"):
        login(boto.client("ecr"), elsewhere, docker)
    assert docker.calls == []
    endpoint, auth = login(boto.client("ecr"), f"{registry}/dogops-dev/serving@{DIGEST}", docker)
    assert endpoint.rstrip("/") == f"http://{registry}" and auth[0] == "AWS"
    assert docker.calls == [("login", "--username", "AWS", "--password-stdin", registry)]
