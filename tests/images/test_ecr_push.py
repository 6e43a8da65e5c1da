"""``dogops promote push`` for real: Debian's docker-registry behind the emulator's ECR, the Docker engine pushing.

Needs `dogops-services:dev` (the smallest image), the `docker-registry` package and DOGOPS_TEST_IMAGES=1; CI has all three.
"""

import json
import os

import pytest
import requests

from dogops.promote.push import ACCEPT, SCHEMA2
from services.stack import registry, settings

from ..conftest import free_port, run_script, script_env
from ..services.processes import Process, client
from .test_images import docker

IMAGE = "dogops-services:dev"
pytestmark = pytest.mark.skipif(os.environ.get("DOGOPS_TEST_IMAGES") != "1",
                                reason="image tests need Docker and built images (make test-images)")


@pytest.fixture(scope="module")
def local_ecr(tmp_path_factory):
    """A registry on loopback and an emulator whose ECR points at it; yields (registry host, emulator URL)."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    reg = registry.start(port, root, root / "registry.log")
    server = Process("services.emulator", root, DOGOPS_REGISTRY_URL=f"http://127.0.0.1:{port}")
    yield f"127.0.0.1:{port}", server.url
    server.stop()
    reg.terminate()
    reg.wait(timeout=20)


def test_push_sends_the_image_unchanged_as_schema_2_by_digest(local_ecr, tmp_path):
    host, url = local_ecr
    env = script_env(**{**settings.emulator_env(), "AWS_ENDPOINT_URL": url, "DOCKER_CONFIG": tmp_path})
    # --force: this image test runs before the compose suite could record the image as tested
    result = run_script("dogops", "promote", "push", IMAGE, "--stage", "dev", "--force", env=env, timeout=300,
                        check=True)
    pushed = result.stdout.strip().splitlines()[-1]
    uri, digest = pushed.split("@")
    try:
        repo = client("ecr", url).describe_repositories(repositoryNames=["dogops-dev/services"])["repositories"][0]
        assert uri == repo["repositoryUri"] == f"{host}/dogops-dev/services"
        manifest = requests.get(f"http://{host}/v2/dogops-dev/services/manifests/{digest}",
                                headers={"Accept": ACCEPT}, timeout=30)
        assert manifest.status_code == 200 and manifest.headers["Content-Type"] == SCHEMA2
        assert manifest.headers["Docker-Content-Digest"] == digest
        assert json.loads(manifest.content)["mediaType"] == SCHEMA2
        docker("pull", pushed, timeout=300)
        image_id = "{{.Id}}"
        assert docker("image", "inspect", "--format", image_id, pushed).stdout == \
            docker("image", "inspect", "--format", image_id, IMAGE).stdout
    finally:
        docker("rmi", f"{uri}:dev", pushed, check=False)
