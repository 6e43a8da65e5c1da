"""A generated data set in the exact dogImages layout, learnable and deterministic.

Each class is a coloured shape on a noisy grey background: the shape kind and
its hue (classes spread evenly round the colour wheel) are fixed per class,
with jitter, while position, size, rotation and the background vary per image. A backbone's features separate the classes, so a
trained head's accuracy means something, while the data costs seconds to make.
"""

import colorsys
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.breeds import BREEDS, folder_name

log = logging.getLogger(__name__)

SHAPES = ("ellipse", "rectangle", "triangle", "stripes", "cross")
SPLIT_SHARES = {"train": 1.0, "valid": 0.25, "test": 0.25}


def _colour(hue: float, rng: np.random.Generator) -> tuple[int, int, int]:
    h = (hue + rng.uniform(-0.02, 0.02)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def draw_example(class_index: int, classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of class ``class_index`` out of ``classes``."""
    background = rng.integers(70, 150) + rng.integers(-12, 12, size=3)
    noise = rng.normal(0, 18, size=(size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(1))
    draw = ImageDraw.Draw(image)
    colour = _colour(class_index / classes, rng)
    shape = SHAPES[class_index % len(SHAPES)]
    half = rng.uniform(0.3, 0.45) * size
    cx, cy = rng.uniform(half, size - half, size=2)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        angle = rng.uniform(0, 2 * np.pi)
        points = [(cx + half * np.cos(angle + k * 2 * np.pi / 3), cy + half * np.sin(angle + k * 2 * np.pi / 3))
                  for k in range(3)]
        draw.polygon(points, fill=colour)
    elif shape == "stripes":
        width = max(2, int(half / 3))
        for x in range(int(box[0]), int(box[2]), 2 * width):
            draw.rectangle((x, box[1], x + width - 1, box[3]), fill=colour)
    else:
        bar = half / 3
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=colour)
    return image


def generate(out: Path, classes: int = 10, per_class: int = 30, size: int = 96, seed: int = 0) -> dict[str, int]:
    """Write ``train/``, ``valid/`` and ``test/`` under ``out``; return image counts per split.

    ``per_class`` images per class go to train, a quarter as many (at least 2)
    to each of valid and test. The same arguments always give the same files.
    """
    if not 1 <= classes <= len(BREEDS):
        raise ValueError(f"classes must be between 1 and {len(BREEDS)}, not {classes}")
    if per_class < 1 or size < 16:
        raise ValueError("per_class must be >= 1 and size >= 16 pixels")
    counts = {}
    for split_index, (split, share) in enumerate(SPLIT_SHARES.items()):
        n = per_class if split == "train" else max(2, round(per_class * share))
        for c in range(classes):
            folder = out / split / folder_name(c)
            folder.mkdir(parents=True, exist_ok=True)
            breed = BREEDS[c]
            for i in range(n):
                rng = np.random.default_rng([seed, split_index, c, i])
                draw_example(c, classes, size, rng).save(folder / f"{breed}_{i + 1:05d}.jpg", quality=90)
        counts[split] = n * classes
    log.info("synthetic data in %s: %s images, %d classes, %dpx", out, counts, classes, size)
    return counts
