"""A private Python environment on top of the running one, for the user's ``requirements.txt``: a venv whose
``.pth`` adds this Python's own site-packages after its own, so ``pip install -r requirements.txt`` there lands in
the venv's folder (and goes with it), sees what is installed already (torch, the toolkit) as satisfied, and never
changes the running environment (pip leaves packages outside the venv alone). Script mode's hosts (natively) and
``serve`` (a model's ``code/requirements.txt``) use it."""

import site
import subprocess
import sys
from pathlib import Path


def private_python(folder: Path) -> Path:
    """A venv in ``folder`` that sees this Python's packages after its own; its ``python`` (``pip``/``pip3`` on its
    ``bin`` run this Python's pip into it)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    (purelib(folder) / "zz-dogops-stack.pth").write_text(  # addsitedir: the running Python's .pth files count too
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages() if Path(d).is_dir())
        + "\n", encoding="utf-8")
    for tool in ("pip", "pip3"):  # `pip` as the containers have it, into this venv
        shim = folder / "bin" / tool
        shim.write_text(f'#!/bin/sh\nexec "{folder / "bin" / "python"}" -m pip "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    return folder / "bin" / "python"


def purelib(folder: Path) -> Path:
    """The venv's own site-packages."""
    return Path(subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
