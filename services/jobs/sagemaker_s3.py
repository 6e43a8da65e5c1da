"""What SageMaker does with S3 around a training container: an S3 prefix copied into a channel folder (File
mode) or the checkpoints folder, and the model folder packed as a reproducible ``model.tar.gz``."""

import gzip
import tarfile
from pathlib import Path

from dogops.s3upload import parse_s3_uri


def download_prefix(s3, uri: str, dest: Path) -> int:
    """Every object under ``uri`` (an S3 prefix) into ``dest``, keys relative to the prefix; the count.
    Folder markers and keys that would climb out of ``dest`` are skipped."""
    bucket, prefix = parse_s3_uri(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
            if obj["Key"].endswith("/") or ".." in relative.split("/"):
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count


def pack_model_dir(model_dir: Path, archive: Path) -> None:
    """``model_dir`` as SageMaker's ``model.tar.gz``, byte for byte the same for the same files: a model
    published again changes nothing, a retrained one rolls the endpoint (its ETag names the new model)."""

    def same_every_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with open(archive, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name, filter=same_every_time)
