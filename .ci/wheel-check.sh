#!/usr/bin/env bash
# CI: dogops as a user installs it. Builds the wheel from the tracked files, checks that it holds every data
# file, installs it (not editable) into a fresh venv after the locks of the roles that `dogops up` runs
# natively (serve, train, stack), and then, outside the source tree: `dogops --help`; `train` (1 epoch) on
# generated data and `serve` answering `dogops predict` with that model; `dogops up` and one `dogops invoke`
# on free ports and a state folder of its own; `dogops down`. Everything it started is stopped on exit,
# pass or fail, and its folder removed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/dogops-wheel-check.XXXXXX)
serve_pid="" stack_up=""
started=$SECONDS

step() { printf '[%4ds] %s\n' $((SECONDS - started)) "$*"; }
stop_all() {
    rc=$?
    if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true; fi
    if [ -n "$stack_up" ]; then (cd "$work" && venv/bin/dogops down --timeout 30) || true; fi
    [ $rc -eq 0 ] || { echo "wheel check failed ($rc); logs:"; tail -n 30 "$work"/*.log "$work"/stack/logs/*.log 2>/dev/null || true; }
    rm -rf "$work"
}
trap stop_all EXIT

step "wheel: built from the tracked files"
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null \
    | tar -xf - -C "$work" --one-top-level=src
.venv/bin/pip wheel --quiet --no-deps -w "$work/dist" "$work/src" 2>&1 | { grep -v '^WARNING: Location' || true; }
wheel=$(echo "$work"/dist/dogops-*.whl)
# Every non-Python file of the packages (their run-time data), less the image files, is in the wheel.
.venv/bin/python - "$wheel" "$work/src" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel, src = zipfile.ZipFile(sys.argv[1]).namelist(), Path(sys.argv[2])
data = sorted(str(p.relative_to(src)) for top in ("dogops", "training", "serving", "services")
              for p in (src / top).rglob("*") if p.is_file() and p.suffix != ".py" and p.name != "Dockerfile")
missing = [p for p in data if p not in wheel] + [p for p in ["dogops/function/lambda_function.py"] if p not in wheel]
sys.exit(f"the wheel lacks {missing}" if missing else print(f"  {len(data)} data files in the wheel"))
EOF

step "venv: requirements/serve.txt, train.txt, stack.txt (hashes required), then the wheel"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-compile --require-hashes \
    -r requirements/serve.txt -r requirements/train.txt -r requirements/stack.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
"$work/venv/bin/pip" install --quiet --no-deps "$wheel" 2>&1 | { grep -v '^WARNING: Location' || true; }
"$work/venv/bin/pip" check

cd "$work"  # nothing below may import from the source tree
unset PYTHONPATH
bin=$work/venv/bin
free_port() { "$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$bin/python" -c 'import dogops, sys; sys.exit(None if dogops.__file__.startswith(sys.prefix) else dogops.__file__)'

step "dogops --help"
"$bin/dogops" --help >/dev/null

step "train: 1 epoch on 3 generated breeds"
"$bin/dogops" data synthetic --out data --classes 3 --per-class 8 --size 64 --seed 0
"$bin/train" --data data --model-dir ml/model --checkpoint-dir checkpoints --epochs 1 \
    --backbone efficientnet_lite0 --image_size 64 --batch_size 16 > train.log 2>&1

step "serve: that model, asked by dogops predict"
port=$(free_port)
SAGEMAKER_BASE_DIR=$work/ml SAGEMAKER_BIND_TO_PORT=$port DOGOPS_BIND_HOST=127.0.0.1 \
    SAGEMAKER_MODEL_SERVER_WORKERS=1 "$bin/serve" > serve.log 2>&1 &
serve_pid=$!
photo=$(find data/test -name '*.jpg' | sort | head -n 1)
"$bin/dogops" predict "$photo" --endpoint "http://127.0.0.1:$port" --top-k 3 --wait 120 | tee predict.log
grep -q '^ 1\. ' predict.log
kill "$serve_pid" && wait "$serve_pid" || true
serve_pid=""

step "dogops up, one dogops invoke, dogops down"
DOGOPS_EMULATOR_PORT=$(free_port) DOGOPS_GATEWAY_PORT=$(free_port) DOGOPS_SERVING_PORT=$(free_port)
export DOGOPS_EMULATOR_PORT DOGOPS_GATEWAY_PORT DOGOPS_SERVING_PORT DOGOPS_STATE_DIR=$work/stack
stack_up=1
"$bin/dogops" up --timeout 240
(
    eval "$("$bin/dogops" env)"
    "$bin/dogops" invoke --url "$DOGOPS_SAMPLES_URL/dog.jpg" | tee invoke.log
)
grep -q '^ 1\. ' invoke.log
"$bin/dogops" down
stack_up=""
step "wheel check passed"
