"""``model.tar.gz`` as SageMaker moves it between training and hosting, and where it lives (``parse_s3_uri``).

The one reproducible packer (:func:`pack`: the same bytes for the same files, as the local stack's training
jobs, its bootstrap and the tuner's best model pack ``/opt/ml/model``) and the one safe extractor
(:func:`extract`: serving's ``MODEL_DATA_URL``, the local stack's hosting and ``promote preflight`` all unpack
through it). Standard library only, so every image and role can import it.

Only plain files and folders whose names stay inside the target are extracted: absolute names, ``..``,
symbolic and hard links, devices and FIFOs are refused, as are archives of more than ``MAX_MEMBERS``
members or ``MAX_BYTES`` uncompressed. The members are checked here, not left to ``extractall(filter="data")``,
which Python 3.11.0-3.11.3 lack; where the filter exists it is applied as well.
"""

import gzip
import sys
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from . import atomic

MAX_BYTES = 10 << 30  # uncompressed, all members together
MAX_MEMBERS = 10_000
UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class ArchiveError(ValueError):
    """An archive that is not a readable gzip-compressed tar or is unsafe to extract; the message says why."""


def _members(tar: tarfile.TarFile, max_members: int) -> list[tarfile.TarInfo]:
    members = []
    for member in tar:
        if len(members) == max_members:
            raise ArchiveError(f"more than {max_members} members")
        members.append(member)
    return members


def read_members(path: Path, max_members: int = MAX_MEMBERS) -> list[tarfile.TarInfo]:
    """The members of the gzip-compressed tar at ``path`` (headers only), or ``ArchiveError``."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            return _members(tar, max_members)
    except UNREADABLE as exc:
        raise ArchiveError(f"not a gzip-compressed tar: {exc}") from None


def problems(members: list[tarfile.TarInfo], max_bytes: int = MAX_BYTES) -> list[str]:
    """Why ``members`` cannot be extracted safely, one reason per member or limit; empty when they can."""
    found = []
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            found.append(f"{member.name!r} would land outside the model directory")
        elif not (member.isfile() or member.isdir()):
            found.append(f"{member.name!r} is a link or a special file, not a plain file or folder")
    total = sum(m.size for m in members if m.isfile())
    if total > max_bytes:
        found.append(f"{total:,} bytes uncompressed, more than the {max_bytes:,} allowed")
    return found


def extract(path: Path, into: Path, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS) -> Path:
    """Unpack the gzip-compressed tar at ``path`` into ``into`` (made if missing) after checking every member;
    return ``into``. Anything unreadable or unsafe is an ``ArchiveError`` and nothing is extracted."""
    Path(into).mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = _members(tar, max_members)
            found = problems(members, max_bytes)
            if found:
                raise ArchiveError("; ".join(found))
            tar.extractall(into, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except UNREADABLE as exc:
        raise ArchiveError(f"not a gzip-compressed tar: {exc}") from None
    return Path(into)


def pack(model_dir: Path, archive: Path) -> Path:
    """``model_dir``'s files at the top of a gzip-compressed tar, as SageMaker packs ``/opt/ml/model``, byte for
    byte the same for the same files (no times or owners, no gzip timestamp or file name): a model published
    again changes nothing, a retrained one rolls the endpoint (its ETag names the new model). Written atomically
    (``atomic``): ``archive`` is the old file or the whole new one. Returns ``archive``."""

    def same_every_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with atomic.replacing(archive) as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w") as tar:
        for path in sorted(Path(model_dir).iterdir()):
            tar.add(path, arcname=path.name, filter=same_every_time)
    return Path(archive)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://BUCKET/PREFIX URI: {uri!r}")
    return parsed.netloc, parsed.path.strip("/")


def main(argv: list[str] | None = None) -> int:
    """``python -m training.archive pack MODEL_DIR ARCHIVE``: the packer from the training image, for a host
    without this package (the EC2 training instance packs ``/opt/ml/model`` through its image so)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "pack":
        print("usage: python -m training.archive pack MODEL_DIR ARCHIVE", file=sys.stderr)
        return 2
    pack(Path(args[1]), Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
