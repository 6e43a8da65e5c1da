#!/bin/bash
# dogops promote train --ec2: the user data of the training instance, rendered by dogops/promote/ec2.py.
# Assumes Amazon Linux 2023 (x86_64): python3 and dnf; docker and python3-boto3 are installed when missing.
# Steps: ECR login, pull the training image by digest, data and checkpoints from S3 into an /opt/ml tree,
# `train` in the container with the tree mounted, IMDSv2 spot/instance-action watched every second by a loop of
# its own (the two-minute notice: SIGTERM to the container, which saves a checkpoint and exits 143), checkpoints
# synced to S3 periodically and at the end, the log shipped to CloudWatch Logs, on success model.tar.gz to the
# output prefix, then shutdown (the launch template makes shutdown terminate the instance).
# Rehearsal overrides (the local stack; unset on AWS): DOGOPS_EC2_ROOT, DOGOPS_IMDS_URL (and boto3's
# AWS_EC2_METADATA_SERVICE_ENDPOINT), AWS_ENDPOINT_URL, DOGOPS_DOCKER, DOGOPS_TRAIN_ON_HOST (a `train` on the
# host instead of the container: rehearsal only), DOGOPS_SHUTDOWN, DOGOPS_SYSTEMD_RUN, DOGOPS_SYNC_S.
# The instance's own cap, set first: systemd powers it off MAX_RUN_S (the job's max_run_s) after boot whatever
# becomes of this script (a timer of systemd's, not a process of the script); the launch template's
# InstanceInitiatedShutdownBehavior makes that power-off a termination. Without the cap nothing runs.
set -uo pipefail

export DOGOPS_JOB=@@JOB@@
export DOGOPS_REGION=@@REGION@@ AWS_DEFAULT_REGION=@@REGION@@
export DOGOPS_IMAGE=@@IMAGE@@
export DOGOPS_DATA=@@DATA@@
export DOGOPS_CHECKPOINTS=@@CHECKPOINTS@@
export DOGOPS_OUTPUT=@@OUTPUT@@
export DOGOPS_LOG_GROUP=@@LOG_GROUP@@
export DOGOPS_INSTANCE_TYPE=@@INSTANCE_TYPE@@
export DOGOPS_HYPERPARAMETERS=@@HYPERPARAMETERS@@
MAX_RUN_S=@@MAX_RUN_S@@
export DOGOPS_EC2_ROOT=${DOGOPS_EC2_ROOT:-/opt/dogops}
DOCKER=${DOGOPS_DOCKER:-docker}
SHUTDOWN=${DOGOPS_SHUTDOWN:-shutdown -h now}
SYNC_S=${DOGOPS_SYNC_S:-60}
HELPER=$DOGOPS_EC2_ROOT/ec2_instance.py

mkdir -p "$DOGOPS_EC2_ROOT/ml"
exec >>"$DOGOPS_EC2_ROOT/job.log" 2>&1
say() { echo "$(date -u +%FT%TZ) dogops-ec2: $*"; }
helper() { python3 "$HELPER" "$@"; }

if ${DOGOPS_SYSTEMD_RUN:-systemd-run} --on-boot="${MAX_RUN_S}s" --unit=dogops-max-runtime \
        --description="dogops: the job's maximum runtime" systemctl poweroff; then
    say "max runtime: the instance powers itself off ${MAX_RUN_S} s after boot"
else
    say "could not set the max-runtime cap: not training"
    $SHUTDOWN
    exit 1
fi

cat >"$HELPER" <<'DOGOPS_HELPER'
@@HELPER@@
DOGOPS_HELPER

finish() {
    code=$?
    helper sync || say "checkpoint sync failed"
    say "done (exit $code); shutting down"
    helper logs || true
    $SHUTDOWN
}
trap finish EXIT

if [ -z "${DOGOPS_DOCKER:-}${DOGOPS_TRAIN_ON_HOST:-}" ] && ! command -v docker >/dev/null; then
    dnf install -y docker && systemctl start docker
fi
python3 -c "import boto3" 2>/dev/null || dnf install -y python3-boto3
helper logs || true  # the cap's line reaches CloudWatch Logs before anything that may run into it

say "job $DOGOPS_JOB on $DOGOPS_INSTANCE_TYPE, image $DOGOPS_IMAGE"
if [ -z "${DOGOPS_TRAIN_ON_HOST:-}" ]; then
    helper login && $DOCKER pull "$DOGOPS_IMAGE" || { say "ECR login or pull failed"; exit 1; }
fi
helper download || { say "download failed"; exit 1; }
helper logs

if [ -n "${DOGOPS_TRAIN_ON_HOST:-}" ]; then
    say "REHEARSAL: \`train\` on the host ($DOGOPS_TRAIN_ON_HOST) stands in for the container"
    SAGEMAKER_BASE_DIR=$DOGOPS_EC2_ROOT/ml TRAINING_JOB_NAME=$DOGOPS_JOB "$DOGOPS_TRAIN_ON_HOST" train &
else
    # docker run proxies the signals it gets to the container (--sig-proxy, the default when attached)
    $DOCKER run --rm --name "$DOGOPS_JOB" --shm-size=2g -v "$DOGOPS_EC2_ROOT/ml:/opt/ml" \
        -e TRAINING_JOB_NAME="$DOGOPS_JOB" -e AWS_REGION="$DOGOPS_REGION" "$DOGOPS_IMAGE" train &
fi
training=$!
# The spot notice is watched by a loop of its own (IMDS every second), so that a slow checkpoint sync or log
# shipment cannot hold back the SIGTERM: the checkpoint the training saves on it is the one the next instance
# resumes from. The marker file tells the main loop that the notice came.
NOTICED=$DOGOPS_EC2_ROOT/state/noticed
mkdir -p "$DOGOPS_EC2_ROOT/state" && rm -f "$NOTICED"
(
    while kill -0 "$training" 2>/dev/null; do
        if action=$(helper notice 2>/dev/null); then
            : >"$NOTICED"
            say "spot interruption notice ($action): SIGTERM to the training"
            kill -TERM "$training"
            break
        fi
        sleep 1
    done
) &
watcher=$!
last_sync=$SECONDS
while kill -0 "$training" 2>/dev/null; do
    sleep 1
    if (( SECONDS - last_sync >= SYNC_S )); then
        helper sync; helper logs; last_sync=$SECONDS
    fi
done
wait "$training"
code=$?
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
noticed=""; [ -e "$NOTICED" ] && noticed=1
say "training exited $code"
helper sync || { say "checkpoint sync failed"; exit 1; }
if [ "$code" = 143 ] && [ -n "$noticed" ]; then
    say "interrupted: checkpoints in $DOGOPS_CHECKPOINTS; the next instance resumes from them"
    exit 143
elif [ "$code" != 0 ]; then
    [ -s "$DOGOPS_EC2_ROOT/ml/output/failure" ] && say "failure: $(head -c 1024 "$DOGOPS_EC2_ROOT/ml/output/failure")"
    exit "$code"
fi
# model.tar.gz by the training code's own packer (training.archive: the same bytes for the same model), from the
# image, or in the rehearsal from the venv of the host's `train`; paths relative to $DOGOPS_EC2_ROOT.
if [ -n "${DOGOPS_TRAIN_ON_HOST:-}" ]; then
    pack() { (cd "$DOGOPS_EC2_ROOT" && "${DOGOPS_TRAIN_ON_HOST%/*}/python" -m training.archive pack "$@"); }
else
    pack() { $DOCKER run --rm -v "$DOGOPS_EC2_ROOT:/ec2" -w /ec2 --entrypoint python "$DOGOPS_IMAGE" -m training.archive pack "$@"; }
fi
mkdir -p "$DOGOPS_EC2_ROOT/state"
pack ml/model state/model.tar.gz || { say "packing the model failed"; exit 1; }
helper upload || { say "model upload failed"; exit 1; }
