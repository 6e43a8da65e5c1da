"""Which local images passed the integration suite against the compose stack: promote pushes only those.

``pytest integration_tests`` with ``STACK=compose`` records, when every test
passed, the image ids the stack ran in ``.dogops/tested-images.json``; ``dogops
promote push`` refuses an image whose id is not there unless ``--force``.
"""

import json
import time
from pathlib import Path

RECORD = Path(".dogops") / "tested-images.json"
COMPOSE_IMAGES = ("dogops-serving:dev", "dogops-services:dev", "dogops-training:dev")


def image_id(image: str, docker) -> str:
    """The local image's id (its config digest: the same before and after a push)."""
    return docker("image", "inspect", "--format", "{{.Id}}", image).strip()


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def record(images: tuple[str, ...], docker, path: Path = RECORD) -> dict:
    """Add ``images`` to the record as tested now; return the record."""
    tested = _load(path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for image in images:
        tested[image_id(image, docker)] = {"image": image, "tested_at": stamp,
                                           "suite": "STACK=compose pytest integration_tests"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tested, indent=2) + "\n")
    return tested


def untested_reason(image: str, docker, path: Path = RECORD) -> str | None:
    """Why ``image`` may not be promoted (None when the integration suite passed against it)."""
    identity = image_id(image, docker)
    if identity in _load(path):
        return None
    return (f"{image} (id {identity[:19]}) has not passed `STACK=compose pytest integration_tests`"
            f" (no entry in {path}): run `make test-compose`, or pass --force to push it anyway")
