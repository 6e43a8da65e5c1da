"""An execution environment's log: the runtime's lines (START, END, REPORT) and everything the function writes
to stdout and stderr, one event per line, as Lambda sends them to CloudWatch Logs.

Each line goes to the worker's file (``DOGOPS_LOG_DIR/lambda/<function>/<stream>.log``), to its stream in the
emulator's CloudWatch Logs (group ``/aws/lambda/<function>``, written off the invocation's path by
``services.observability.cloudwatch_logs``) and to the current invocation's log, whose last 4 KB
``LogType=Tail`` returns.
"""

import fcntl
import os
import select
import struct
import termios
import threading
import time
from pathlib import Path

from ..observability import cloudwatch_logs
from ..stack import settings

LOG_TAIL = 4096  # bytes of log returned with X-Amz-Log-Type: Tail
DRAIN_SECONDS = 1.0  # how long an invocation's end waits for the output the function wrote before it returned


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


class Output:
    """One worker's log: its file, its CloudWatch stream, the current invocation's lines."""

    def __init__(self, path: Path, group: str, stream: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.group, self.stream = path, group, stream
        self._file = open(path, "ab", buffering=0)
        self._lock = threading.Lock()  # held while a chunk is read and written out: drain() sees it whole
        self._partial = b""
        self._invocation: list[bytes] = []  # since the last invocation_log(): the init's lines, then one call's
        self._fd = -1

    def follow(self, fd: int) -> None:
        """Read the process's stdout/stderr pipe ``fd`` in a thread until it closes."""
        self._fd = fd
        threading.Thread(target=self._follow, args=(fd,), name=f"lambda-output-{fd}", daemon=True).start()

    def runtime_line(self, text: str) -> None:
        with self._lock:
            self._line(text.encode())

    def drain(self) -> None:
        """Take in what the function wrote before it answered (still in the pipe), and a last unended line."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                try:
                    waiting = _unread(self._fd) if self._fd >= 0 else 0
                except OSError:
                    waiting = 0
                if not waiting:
                    if self._partial:
                        self._line(self._partial + b"\n")
                        self._partial = b""
                    return
            time.sleep(0.001)

    def invocation_log(self) -> bytes:
        """The current invocation's lines, their last ``LOG_TAIL`` bytes; the next invocation starts anew."""
        with self._lock:
            lines, self._invocation = self._invocation, []
        return b"".join(lines)[-LOG_TAIL:]

    def close(self) -> None:
        with self._lock:
            if self._partial:
                self._line(self._partial + b"\n")
                self._partial = b""
            self._file.close()

    def _follow(self, fd: int) -> None:
        try:
            while True:
                select.select([fd], [], [])
                with self._lock:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        return
                    *lines, self._partial = (self._partial + chunk).split(b"\n")
                    for line in lines:
                        self._line(line + b"\n")
        finally:
            with self._lock:
                self._fd = -1
            os.close(fd)

    def _line(self, line: bytes) -> None:
        self._invocation.append(line)
        if not self._file.closed:
            self._file.write(line)
        cloudwatch_logs.shared(settings.REGION).write(self.group, self.stream, line.decode("utf-8", "replace"))
