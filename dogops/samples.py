"""Sample images the local stack serves for URL predictions and the demo page.

``dog.jpg`` is a real photograph when one can be had: the one in Debian's
``darknet`` package (a dog beside a bicycle; GPL-3.0+ or MIT or WTFPL), taken
from an installed package, the user cache, or ``apt-get download``. Without it,
a generated image stands in. One generated image per class of the local data
set is written too, named after its class folder (``001.Affenpinscher.jpg``), so
a correct answer is known.
"""

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from training.breeds import folder_name

from .synthetic import draw_example

log = logging.getLogger(__name__)

DARKNET_DOG = Path("usr/share/darknet/data/dog.jpg")
CACHED_DOG = Path.home() / ".cache" / "dogops" / "photos" / "dog.jpg"


def _apt_download_dog(dest: Path) -> bool:
    """Fetch Debian's darknet package with apt and extract its ``dog.jpg``; False when that is not possible."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", "darknet"], cwd=tmp, check=True, capture_output=True, timeout=180)
            deb = next(Path(tmp).glob("darknet_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), "root"], cwd=tmp, check=True, capture_output=True, timeout=60)
        except (subprocess.SubprocessError, StopIteration, OSError) as exc:
            log.info("no photo from Debian's darknet package (%s)", exc)
            return False
        photo = Path(tmp) / "root" / DARKNET_DOG
        if not photo.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, dest)
    return True


def real_dog_photo() -> Path | None:
    """The darknet package's ``dog.jpg``: installed, cached, or downloaded into the cache; None if unobtainable."""
    installed = Path("/") / DARKNET_DOG
    if installed.is_file():
        return installed
    if CACHED_DOG.is_file() or _apt_download_dog(CACHED_DOG):
        return CACHED_DOG
    return None


def write_samples(out: Path, classes: int = 10, size: int = 128, seed: int = 0) -> list[str]:
    """Write ``dog.jpg`` and one image per class into ``out``; return the file names."""
    out.mkdir(parents=True, exist_ok=True)
    photo = real_dog_photo()
    if photo is not None:
        shutil.copyfile(photo, out / "dog.jpg")
    else:
        log.warning("no real dog photo could be had; dog.jpg is a generated image")
        draw_example(0, classes, 512, np.random.default_rng([seed, 99])).save(out / "dog.jpg", quality=90)
    names = ["dog.jpg"]
    for c in range(classes):
        name = f"{folder_name(c)}.jpg"
        draw_example(c, classes, size, np.random.default_rng([seed, 98, c])).save(out / name, quality=90)
        names.append(name)
    return names
