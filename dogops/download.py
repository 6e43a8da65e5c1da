"""``dogops data dogimages``: the real data set, resumable and checksum-verified.

The zip is downloaded to ``<out>/dogImages.zip.part`` with HTTP range requests,
so an interrupted download continues where it stopped. The finished file is
checked against ``--sha256`` when given, else against the server's S3 ETag
(an MD5, single- or multi-part), and every member's CRC is checked while
unpacking. Offline, the first request fails within seconds with a clear error.
"""

import hashlib
import logging
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import requests

from training.progress import progress

from .checksums import etag_matches

log = logging.getLogger(__name__)

DOGIMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The data set could not be fetched or failed verification."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, part: Path, timeout: float) -> str:
    """Download ``url`` into ``part``, resuming; return the server's ETag ('' if none)."""
    done = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=(timeout, 60))
    except requests.RequestException as exc:
        host = urlparse(url).netloc
        raise DownloadError(f"cannot reach {host} ({type(exc).__name__}); the real dogImages data set needs "
                            f"internet access. Offline, use `dogops data synthetic --out DIR` instead.") from None
    with response:
        if response.status_code == 416:  # the part file already holds everything
            return response.headers.get("ETag", "")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url} answered HTTP {response.status_code}")
        if response.status_code == 200 and done:
            log.info("server ignored the range request: starting the download again")
            done = 0
        total = done + int(response.headers.get("Content-Length", 0))
        if done:
            log.info("resuming download at %.1f of %.1f MB", done / 1e6, total / 1e6)
        with open(part, "ab" if done else "wb") as f:
            chunks = response.iter_content(CHUNK)
            for chunk in progress(chunks, "dogImages.zip", total=max(1, (total - done) // CHUNK + 1)):
                f.write(chunk)
        return response.headers.get("ETag", "")


def download_dogimages(out: Path, url: str = DOGIMAGES_URL, sha256: str | None = None,
                       timeout: float = 10.0) -> Path:
    """Fetch, verify and unpack dogImages into ``out``; return the folder with train/valid/test."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final, part = out / "dogImages.zip", out / "dogImages.zip.part"
    if not final.exists():
        etag = _fetch(url, part, timeout)
        if sha256:
            ok, what = _sha256(part) == sha256.lower(), "sha256"
        elif etag:
            ok, what = etag_matches(part, etag), f"the server's ETag {etag}"
        else:
            raise DownloadError("the server sent no ETag: pass --sha256 to verify the download")
        if not ok:
            part.unlink()
            raise DownloadError(f"downloaded file does not match {what}; removed it, run again to retry")
        part.rename(final)
        log.info("verified %s against %s", final, what)
    try:
        with zipfile.ZipFile(final) as archive:
            members = archive.infolist()
            for member in progress(members, "unpacking"):
                archive.extract(member, out)  # raises BadZipFile on a CRC mismatch
    except zipfile.BadZipFile as exc:
        final.unlink()
        raise DownloadError(f"{final} is corrupt ({exc}); removed it, run again to download it anew") from None
    root = out / "dogImages" if (out / "dogImages").is_dir() else out
    shutil.rmtree(out / "__MACOSX", ignore_errors=True)
    log.info("dogImages ready in %s", root)
    return root
