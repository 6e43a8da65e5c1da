"""Size-bounded rotation of the stack's log files (``*.log`` under the state directory's ``logs/`` and
``hosting/``), done by the supervisor every ``CHECK_SECONDS``: a file over ``DOGOPS_LOG_MAX_BYTES`` (10 MiB) is
copied to ``<name>.1`` (older copies shifted up to ``<name>.<DOGOPS_LOG_BACKUPS>``, 3, the oldest dropped) and
truncated in place.

Copy and truncate (logrotate's ``copytruncate``) rather than renaming, because the writers are other processes
holding the file open (a child's stdout and stderr, a Lambda worker's log): a renamed file would keep growing under
its new name. Every writer opens its log with ``O_APPEND``, so after the truncation its next write lands at the
new end, not at its old offset. Lines written between the copy and the truncation (microseconds) are lost; a
child's output never waits on a pipe to the supervisor, and keeps flowing if the supervisor dies.
"""

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

CHECK_SECONDS = 5.0


def limits() -> tuple[int, int]:
    """(bytes a log may reach before it is rotated, how many rotated copies are kept), from the environment."""
    return int(os.environ.get("DOGOPS_LOG_MAX_BYTES") or 10 << 20), int(os.environ.get("DOGOPS_LOG_BACKUPS") or 3)


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it is over ``max_bytes``; whether it was."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups > 0:
        for number in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{number}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True


def rotate_all(folders: Iterable[Path]) -> list[Path]:
    """Rotate every ``*.log`` under ``folders`` that is over the bound; the ones rotated."""
    max_bytes, backups = limits()
    return [path for folder in folders for path in sorted(folder.rglob("*.log")) if rotate(path, max_bytes, backups)]
