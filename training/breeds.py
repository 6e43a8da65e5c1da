"""The 133 breed names of Udacity's dogImages data set, in class order."""

from pathlib import Path

BREEDS: tuple[str, ...] = tuple(
    Path(__file__).with_name("breeds.txt").read_text(encoding="utf-8").split()
)


def folder_name(index: int) -> str:
    """Folder name of class ``index`` (0-based) in the dogImages layout, e.g. ``001.Affenpinscher``."""
    return f"{index + 1:03d}.{BREEDS[index]}"


def display_name(folder: str) -> str:
    """Human-readable breed from a class folder: ``001.Affenpinscher`` -> ``Affenpinscher``."""
    return folder.split(".", 1)[-1].replace("_", " ")
