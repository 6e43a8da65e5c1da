"""Script mode around the training runner: what SageMaker and a framework container do for a user's own code.

- :func:`program`: the entry point a job names with its code (``training.entry.named_script``);
- :func:`fetch_source`: ``sagemaker_submit_directory`` (the SDK's ``sourcedir.tar.gz`` in S3) unpacked into a
  host's ``code/`` before it starts, with the runner's S3 client (the toolkit then finds ``code/`` ready and
  runs from it, as it does with a local directory), through ``training.archive.extract``'s checks;
- natively, each host gets a job-private Python (``training.private_env``): a venv whose ``.pth`` adds the
  stack's own site-packages (torch, the toolkit, dogops), so the toolkit's ``pip install -r requirements.txt``
  lands in the job's folder and goes with it, never in the stack's venv;
- :func:`mapped`: natively, a ``ContainerEntrypoint`` run with the host's tree at ``/opt/ml``, in a mount
  namespace of its own (``unshare``; a user namespace too unless root): where the machine has no ``/opt/ml``,
  ``/opt`` becomes a tmpfs holding bind mounts of what it held plus ``ml``. Drivers that hard-code ``/opt/ml``
  (SDK v3's ``sm_train.sh``) run unchanged; nothing changes outside the process.
"""

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from training.archive import extract, parse_s3_uri
from training.entry import SOURCE, named_script, unquote


def program(job: dict) -> str | None:
    """The user's entry point the described job names, or None (dogops' own ``train`` runs)."""
    return named_script(job.get("HyperParameters") or {}, job.get("Environment") or {})


def fetch_source(s3, job: dict, code_dir: Path) -> bool:
    """``sagemaker_submit_directory`` (an S3 ``.tar.gz``) unpacked into ``code_dir``; False when the job names
    none in S3 (the toolkit then reads a local one itself)."""
    uri = (job.get("Environment") or {}).get("SAGEMAKER_SUBMIT_DIRECTORY") or unquote(
        (job.get("HyperParameters") or {}).get(SOURCE, ""))
    if not uri or not uri.startswith("s3://"):
        return False
    bucket, key = parse_s3_uri(uri)
    with tempfile.TemporaryDirectory(prefix="dogops-sourcedir-") as tmp:
        archive = Path(tmp) / "sourcedir.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # noqa: BLE001 - the job's failure, in AWS's words
            raise ValueError(f"{SOURCE} {uri} could not be read: {exc}") from exc
        extract(archive, code_dir)
    return True


_MAP_OPT_ML = r"""set -e
base=$1; keep=$2; shift 2
if [ -d /opt/ml ]; then
    mount --bind "$base" /opt/ml
else
    mkdir -p "$keep"
    [ -d /opt ] && mount --rbind /opt "$keep"
    mount -t tmpfs dogops-opt /opt
    for entry in "$keep"/* "$keep"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        target=/opt/${entry##*/}
        if [ -d "$entry" ]; then mkdir "$target"; else touch "$target"; fi
        mount --rbind "$entry" "$target"
    done
    mkdir /opt/ml
    mount --bind "$base" /opt/ml
fi
cd /
exec "$@"
"""


def mapped(base: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``base`` at ``/opt/ml`` in its own mount namespace."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        raise ValueError("a ContainerEntrypoint runs natively only on Linux with unshare (util-linux); "
                         "set DOGOPS_TRAINING_MODE=docker")
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    return [unshare, *namespaces, "--propagation", "private", "sh", "-c", _MAP_OPT_ML, "opt-ml",
            str(base), str(base.parent / ".opt"), *argv]


def describe(argv: list[str]) -> str:
    """``argv`` as a shell would show it (for the job's log)."""
    return " ".join(shlex.quote(a) for a in argv)
