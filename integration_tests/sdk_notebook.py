"""Run by an SDK venv's Python (not by pytest): execute a notebook headless with nbclient, cell by cell, in its
own folder, as Jupyter would, up to and including the cell tagged ``--until`` (default: all); then print the
notebook's ``report`` as JSON on the last line. Each cell's output goes to stderr as it ran; a failing cell stops
the run (exit 1) with its error. Untagged code cells (the script's closing print) are left out.

    python sdk_notebook.py NOTEBOOK [--until TAG]
"""

import argparse
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def text(outputs) -> str:
    return "".join(o.get("text", "") or "\n".join(o.get("traceback", [])) for o in outputs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--until")
    args = parser.parse_args()
    book = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(book, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(book.cells):
            if cell.cell_type != "code" or not cell.metadata.get("tags"):
                continue
            try:
                client.execute_cell(cell, index)
            finally:
                print(text(cell.outputs), file=sys.stderr, flush=True)
            if args.until in cell.metadata["tags"]:
                break
        final = nbformat.v4.new_code_cell("import json; print(json.dumps(report, default=str))")
        book.cells.append(final)
        client.execute_cell(final, len(book.cells) - 1)
    line = text(final.outputs).strip().splitlines()[-1]
    json.loads(line)
    print(line)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CellExecutionError as error:
        print(f"a cell failed: {error}", file=sys.stderr)
        sys.exit(1)
