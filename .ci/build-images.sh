#!/usr/bin/env bash
# CI and offline machines only: build the project's images with no registry.
# The wheels of each image's lock (requirements/<role>.txt, checked against its hashes) and the
# build backend are fetched on the host (pip reaches PyPI and this machine's local wheel store),
# served over loopback, and installed in the build with --no-index, on the stand-in base from
# docker-engine.sh. Users build with plain `docker build` (or `docker compose build`).
# Usage: build-images.sh [ROLE...]   (roles: training serving services; default all three)
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A lock=([training]=train [serving]=serve [services]=stack)
roles=("$@")
[ $# -gt 0 ] || roles=(training serving services)
wheels=.ci/wheels
mkdir -p "$wheels"
download() { .venv/bin/pip download --quiet -d "$wheels" "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
for role in "${roles[@]}"; do
    download --require-hashes -r "requirements/${lock[$role]}.txt"
done
download $(python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
# A lock's sdist without pyproject.toml (sagemaker-training, built into a wheel in the training image's first
# stage) builds with pip's default backend for setup.py, which wants setuptools and wheel.
download setuptools wheel
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
args=(--network=host --build-arg BASE_IMAGE=dogops-base:bookworm
      --build-arg "PIP_EXTRA_ARGS=--no-index --find-links http://127.0.0.1:$port/")
for role in "${roles[@]}"; do
    docker build --quiet "${args[@]}" -f "$role/Dockerfile" -t "dogops-${role}:dev" . >/dev/null
    echo "built dogops-${role}:dev"
done
# Rebuilds leave the previous images dangling (6 GB each): drop them, or repeated runs fill the disk.
docker image prune --force >/dev/null
