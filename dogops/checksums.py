"""S3-style checksums of local files: MD5 ETags, single- and multi-part."""

import hashlib
from pathlib import Path


def s3_etag(path: Path, part_size: int | None = None) -> str:
    """The ETag S3 gives ``path`` when uploaded whole, or in ``part_size`` parts."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        if part_size is None or size <= part_size:
            digest = hashlib.md5()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()
        parts = [hashlib.md5(chunk).digest() for chunk in iter(lambda: f.read(part_size), b"")]
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def etag_matches(path: Path, etag: str) -> bool:
    """Whether ``path`` has S3 ETag ``etag``; multipart ETags are tried at the usual part sizes."""
    etag = etag.strip('"')
    if "-" not in etag:
        return s3_etag(path) == etag
    parts = int(etag.rsplit("-", 1)[1])
    size = Path(path).stat().st_size
    mib = 1 << 20
    guesses = {-(-size // parts // mib) * mib, 8 * mib, 16 * mib, 5 * mib, 64 * mib}
    return any(s3_etag(path, p) == etag for p in guesses if -(-size // p) == parts)
