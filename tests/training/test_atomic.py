"""``training.atomic``: a file is its old content or the whole new one, whatever happens while it is written."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training import atomic

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "best.json"
    atomic.write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic.replacing(target) as out:
        out.write(b"half of the new")
        raise RuntimeError("killed here")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


WRITER = textwrap.dedent("""
    import sys
    from training import atomic
    n = 0
    while True:
        n += 1
        atomic.write_bytes(sys.argv[1], str(n).encode() * 200_000)
""")


@pytest.mark.parametrize("after", [0.2, 0.5])
def test_a_writer_killed_at_any_moment_leaves_a_whole_version(tmp_path, after):
    target = tmp_path / "model.tar.gz"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT)
    time.sleep(after)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    data = target.read_bytes()
    n = data[:len(data) // 200_000]
    assert data == n * 200_000 and int(n) >= 1
