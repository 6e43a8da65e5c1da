"""The dogImages folder layout: ``{train,valid,test}/NNN.Breed_Name/*.jpg``.

Decoding goes through one function, :func:`load_rgb`, shared with serving, so
training and inference see images the same way: EXIF orientation applied,
any mode (greyscale, RGBA, palette, CMYK) converted to RGB, and JPEGs decoded
at reduced size when they are much bigger than the model needs.
"""

import dataclasses
import hashlib
import logging
import re
from pathlib import Path

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
CLASS_FOLDER = re.compile(r"^\d{3}\.\S+$")


class DatasetError(ValueError):
    """The data directory is missing, empty or not in the dogImages layout."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: image paths with their class indices."""

    name: str
    paths: tuple[Path, ...]
    labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data directory in the dogImages layout."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, Split]

    def content_hash(self) -> str:
        """sha256 over every image's relative path and bytes: the data's identity."""
        digest = hashlib.sha256()
        for split in self.splits.values():
            for path in split.paths:
                digest.update(str(path.relative_to(self.root)).encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and CLASS_FOLDER.match(p.name))


def open_dataset(root: Path) -> Dataset:
    """Scan ``root``; a wrong layout is a :class:`DatasetError` saying what was expected."""
    root = Path(root)
    expected = f"expected {root}/{{train,valid,test}}/NNN.Breed_Name/*.jpg (the dogImages layout)"
    if not root.is_dir():
        raise DatasetError(f"data directory {root} does not exist; {expected}")
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        present = sorted(p.name for p in root.iterdir())[:10]
        raise DatasetError(f"no {', '.join(missing)} folder in {root} (found: {present or 'nothing'}); {expected}")
    classes = _class_folders(root / "train")
    if not classes:
        raise DatasetError(f"no class folders like 001.Affenpinscher in {root / 'train'}; {expected}")
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        folders = _class_folders(root / split)
        extra = sorted(set(folders) - set(classes))
        if extra:
            raise DatasetError(f"{root / split} has classes not in train: {', '.join(extra[:5])}")
        items = [(p, index[folder]) for folder in folders
                 for p in sorted((root / split / folder).iterdir())
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not items:
            raise DatasetError(f"no images in {root / split}; {expected}")
        splits[split] = Split(split, tuple(p for p, _ in items), tuple(label for _, label in items))
    return Dataset(root, tuple(classes), splits)


def load_rgb(source, target_size: int | None = None) -> Image.Image:
    """Decode an image file or file object to an upright RGB image.

    With ``target_size``, JPEGs are decoded in draft mode at the smallest scale
    that still covers ``2 * target_size`` pixels on the short side, which makes
    big photos several times cheaper to decode without hurting the result.
    """
    image = Image.open(source)
    if target_size and image.format == "JPEG":
        image.draft("RGB", (2 * target_size, 2 * target_size))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
