"""The example's data: three classes of generated 32 px JPEGs (a red, a green or a blue square on noise), in the
layout the training script reads (one folder per class) for the train, validation and test splits."""

import random
from pathlib import Path

from PIL import Image

CLASSES = ("red", "green", "blue")
SPLITS = {"train": 24, "validation": 8, "test": 4}


def image(label: int, rng: random.Random) -> Image.Image:
    picture = Image.effect_noise((32, 32), 40).convert("RGB")
    x, y, side = rng.randrange(0, 16), rng.randrange(0, 16), rng.randrange(10, 17)
    color = [rng.randrange(0, 80) for _ in range(3)]
    color[label] = rng.randrange(170, 256)
    picture.paste(tuple(color), (x, y, x + side, y + side))
    return picture


def make_dataset(root: str | Path, seed: int = 0) -> Path:
    root, rng = Path(root), random.Random(seed)
    for split, count in SPLITS.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image(label, rng).save(folder / f"{index:03d}.jpg", quality=90)
    return root
