"""What SageMaker does with S3 around a training container: an S3 prefix copied into a channel folder (File
mode) or the checkpoints folder (the model folder is packed by ``training.archive.pack``)."""

from pathlib import Path

from training.archive import parse_s3_uri


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

