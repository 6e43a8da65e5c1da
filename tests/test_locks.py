"""The lock files (requirements/<role>.txt, from `make lock`) against pyproject.toml's ranges, and the images
against the locks: every requirement of a role is pinned, with hashes, inside its range; every role has the
dev lock's versions (what the tests run); each image installs only its own role's lock."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ROLES = ["serve", "train", "tune", "stack", "promote"]
IMAGES = {"training": "train", "serving": "serve", "services": "stack"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock(role: str) -> dict[str, tuple[str, int]]:
    """``{name: (version, number of hashes)}`` of ``requirements/<role>.txt``."""
    pins, name = {}, None
    for line in (ROOT / "requirements" / f"{role}.txt").read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            assert name not in pins, f"{role}.txt pins {name} twice"
            pins[name] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:"):
            pins[name] = (pins[name][0], pins[name][1] + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{role}.txt: an unexpected line {line!r}")
    return pins


def requirements(extra: str) -> list[Requirement]:
    """The base dependencies and ``extra``'s, with the project's own extras (``dogops[train]``) expanded."""
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    for text in PROJECT["optional-dependencies"][extra]:
        requirement = Requirement(text)
        if requirement.name == PROJECT["name"]:
            found += [r for inner in sorted(requirement.extras) for r in requirements(inner)]
        else:
            found.append(requirement)
    return found


@pytest.mark.parametrize("role", ROLES + ["dev"])
def test_every_requirement_is_pinned_with_hashes_inside_its_range(role):
    pins = lock(role)
    for requirement in requirements(role):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{role}.txt lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), \
            f"{role}.txt pins {name}=={pins[name][0]}, outside {requirement.specifier}: run `make lock`"
    assert all(hashes for _, hashes in pins.values()), "every pin carries its files' hashes"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_the_dev_locks_versions(role):
    dev, pins = lock("dev"), lock(role)
    assert pins.keys() <= dev.keys(), pins.keys() - dev.keys()
    assert {name: version for name, (version, _) in pins.items()} == \
        {name: dev[name][0] for name in pins}, "the images run what the tests ran"


def test_the_roles_carry_only_their_own_libraries():
    torch, tuning = {"torch", "torchvision"}, {"optuna", "matplotlib"}
    for role in ("serve", "train"):
        assert torch <= lock(role).keys() and not (tuning | {"moto", "cfn-lint"}) & lock(role).keys(), role
    for role in ("stack", "promote"):
        assert not (torch | tuning) & lock(role).keys(), role


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_its_roles_lock_with_hashes(image):
    text = (ROOT / image / "Dockerfile").read_text()
    assert f"requirements/{IMAGES[image]}.txt" in text
    assert "--require-hashes" in text
    assert not any(f"requirements/{other}.txt" in text for other in set(ROLES) - {IMAGES[image]})
