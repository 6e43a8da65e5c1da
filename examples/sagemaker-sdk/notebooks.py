"""The notebooks are the scripts: ``python notebooks.py`` writes each ``sdk_v*.py`` (cells marked ``# %%``,
``# %% [markdown]``, a cell's tags as ``tags=["name"]``) as the ``.ipynb`` beside it, in nbformat 4; ``--check``
only says whether they agree. Standard library only."""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def cells(script: str) -> list[dict]:
    """The script's cells, each as nbformat 4 has it."""
    found = []
    for line in script.splitlines():
        match = MARKER.match(line)
        if match:
            kind = "markdown" if match["markdown"] else "code"
            found.append({"cell_type": kind, "metadata": {"tags": json.loads(match["tags"])} if match["tags"] else {},
                          "source": []})
            if kind == "code":
                found[-1].update(execution_count=None, outputs=[])
        elif found:
            found[-1]["source"].append(line[2:] if found[-1]["cell_type"] == "markdown" else line)
    for index, cell in enumerate(found):
        text = "\n".join(cell["source"]).strip("\n")
        cell["source"] = text.splitlines(keepends=True)
        cell["id"] = (cell["metadata"].get("tags") or [f"cell-{index}"])[0]
    return found


def notebook(script: Path) -> str:
    return json.dumps({"cells": cells(script.read_text(encoding="utf-8")), "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def main(check: bool) -> int:
    stale = []
    for script in sorted(HERE.glob("sdk_v*.py")):
        target, text = script.with_suffix(".ipynb"), notebook(script)
        if check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} (python notebooks.py rewrites them)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
