"""``dogops promote push``: a tested local image to ECR unchanged, addressed by digest (contracts §D.1, §1.7).

The Docker CLI is reached only through ``docker`` (a callable), so the ECR logic runs in tests without an engine.
"""

import base64
import json
import subprocess
from collections.abc import Callable
from urllib.parse import urlparse

import requests

from .config import Stage
from .tested import untested_reason

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((SCHEMA2, "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"))
Docker = Callable[..., str]


class PushRefused(RuntimeError):
    """The image cannot run on SageMaker or Lambda as it is (architecture, manifest type) or has nowhere to go."""


def docker(*args: str, stdin: str | None = None) -> str:
    """Run ``docker ARGS`` and return its stdout; a failure raises with docker's own message."""
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def repository_uri(ecr, name: str, stage: Stage) -> str:
    """The repository's URI, creating it (tagged with project and stage) when missing."""
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
    except ecr.exceptions.RepositoryNotFoundException:
        return ecr.create_repository(repositoryName=name, tags=[
            {"Key": "project", "Value": stage.project}, {"Key": "stage", "Value": stage.name}])["repository"][
            "repositoryUri"]


def repositories(ecr, project: str, stage: str | None = None) -> list[dict]:
    """The ECR repositories tagged with ``project`` (and ``stage``) as ``repository_uri`` tags them."""
    found = []
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            tags = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]}
            if tags.get("project") == project and stage in (None, tags.get("stage")):
                found.append({"name": repo["repositoryName"], "arn": repo["repositoryArn"], "stage": tags.get("stage")})
    return found


def credentials(ecr) -> tuple[str, str, str]:
    """``(proxy endpoint, user, password)`` from ``GetAuthorizationToken``."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return data["proxyEndpoint"], user, password


def login(ecr, image: str, docker: Docker = docker) -> tuple[str, tuple[str, str]]:
    """``docker login`` to the registry of ``image`` (REGISTRY/REPO...) with ECR's token; the proxy endpoint and
    the basic-auth pair. ``PushRefused`` when the token is for another registry."""
    endpoint, user, password = credentials(ecr)
    host = image.split("/", 1)[0]
    if urlparse(endpoint).netloc != host:
        raise PushRefused(f"{image} is not on the registry {endpoint} that ECR's token is for "
                          "(locally: start the emulator with DOGOPS_REGISTRY_URL)")
    docker("login", "--username", user, "--password-stdin", host, stdin=password)
    return endpoint, (user, password)


def manifest_type(endpoint: str, repository: str, digest: str, auth: tuple[str, str]) -> str:
    """The media type the registry stores for ``repository@digest`` (Registry API v2, basic auth as ECR takes)."""
    response = requests.get(f"{endpoint}/v2/{repository}/manifests/{digest}", headers={"Accept": ACCEPT},
                            auth=auth, timeout=30)
    response.raise_for_status()
    return response.headers.get("Content-Type", "").split(";")[0].strip()


def check_platform(image: str, docker: Docker = docker) -> None:
    """Refuse an image that is not ``linux/amd64`` (what SageMaker's and Lambda's x86 hosts run)."""
    platform = docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image).strip()
    if platform != "linux/amd64":
        raise PushRefused(f"{image} is {platform}, not linux/amd64: build it with --platform linux/amd64")


def check_manifest(uri: str, media_type: str) -> None:
    """Refuse anything but a Docker schema-2 manifest: SageMaker and Lambda reject OCI manifests and indexes."""
    if media_type != SCHEMA2:
        raise PushRefused(f"{uri} has manifest type {media_type!r}, not {SCHEMA2}: SageMaker and Lambda reject it; "
                          "build with `docker buildx build --provenance=false --output type=docker` (or the legacy "
                          "builder) and push again")


def push(image: str, repository: str, tag: str, stage: Stage, session, docker: Docker = docker,
         media_type: Callable[..., str] = manifest_type, force: bool = False) -> str:
    """Push local ``image`` to ECR ``repository:tag``; return ``<repositoryUri>@sha256:...`` once it is verified.
    Only an image the compose integration suite passed against, unless ``force``."""
    reason = None if force else untested_reason(image, docker)
    if reason:
        raise PushRefused(reason)
    check_platform(image, docker)
    ecr = session.client("ecr")
    uri = repository_uri(ecr, repository, stage)
    endpoint, auth = login(ecr, uri, docker)
    docker("tag", image, f"{uri}:{tag}")
    docker("push", f"{uri}:{tag}")
    digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", image))
    pushed = [d for d in digests if d.startswith(uri + "@")]
    if not pushed:
        raise RuntimeError(f"docker push gave no digest for {uri}: {digests}")
    check_manifest(pushed[0], media_type(endpoint, repository, pushed[0].split("@", 1)[1], auth))
    return pushed[0]
