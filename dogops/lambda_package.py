"""The Lambda function's deployment package: a deterministic zip of ``dogops/function/lambda_function.py``.

The same source always gives the same bytes (sorted entries, fixed timestamps,
mode 0644), so its ``CodeSha256`` says whether the deployed code is current.
"""

import base64
import hashlib
import io
import zipfile
from importlib.resources import files
from importlib.resources.abc import Traversable

# Package data: in the wheel as in the source tree (lambda/Dockerfile copies the same file).
SOURCE = files("dogops") / "function" / "lambda_function.py"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def build_zip(files: dict[str, bytes]) -> bytes:
    """A zip of ``{name: content}``, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def code_sha256(package: bytes) -> str:
    """Lambda's ``CodeSha256``: the base64 of the package's SHA-256."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def function_zip(source: Traversable = SOURCE) -> tuple[bytes, str]:
    """The handler module at the zip root; return the zip and its ``CodeSha256``."""
    if not source.is_file():
        raise FileNotFoundError(f"the Lambda function's source is missing: {source}")
    package = build_zip({source.name: source.read_bytes()})
    return package, code_sha256(package)
