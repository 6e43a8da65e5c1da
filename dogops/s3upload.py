"""``dogops data upload``: a folder to ``s3://bucket/prefix``, skipping unchanged files.

boto3 finds its endpoint as usual, so ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``) points the same code at an emulator. A file is
unchanged when an object of the same key has the same size and the same
S3 ETag as the file would get with the transfer settings used here.
"""

import logging
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

from training.archive import parse_s3_uri
from training.progress import progress

from .checksums import s3_etag

log = logging.getLogger(__name__)

PART_SIZE = 8 << 20
TRANSFER = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)


def upload_dir(local: Path, uri: str, client=None) -> dict[str, int]:
    """Upload every file under ``local``; return counts of uploaded and skipped files and bytes sent."""
    local = Path(local)
    if not local.is_dir():
        raise ValueError(f"{local} is not a directory")
    bucket, prefix = parse_s3_uri(uri)
    s3 = client or boto3.client("s3")
    existing = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            existing[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
    files = sorted(p for p in local.rglob("*") if p.is_file())
    stats = {"uploaded": 0, "skipped": 0, "bytes": 0}
    for path in progress(files, f"upload to s3://{bucket}/{prefix}"):
        key = "/".join(filter(None, [prefix, path.relative_to(local).as_posix()]))
        size = path.stat().st_size
        if existing.get(key) == (size, s3_etag(path, PART_SIZE)):
            stats["skipped"] += 1
            continue
        s3.upload_file(str(path), bucket, key, Config=TRANSFER)
        stats["uploaded"] += 1
        stats["bytes"] += size
    log.info("s3://%s/%s: %d uploaded (%.1f MB), %d unchanged", bucket, prefix, stats["uploaded"],
             stats["bytes"] / 1e6, stats["skipped"])
    return stats
