"""Progress: a bar on a terminal, a few plain log lines otherwise (SageMaker, CI)."""

import logging
import sys
from collections.abc import Iterable, Iterator

log = logging.getLogger("training")


def progress(items: Iterable, label: str, total: int | None = None) -> Iterator:
    """Yield ``items``, showing progress; plain mode logs about every 25%."""
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=label, total=total, leave=False)
        return
    step = max(1, total // 4)
    for done, item in enumerate(items, 1):
        yield item
        if done % step == 0 or done == total:
            log.info("%s: %d/%d", label, done, total)
