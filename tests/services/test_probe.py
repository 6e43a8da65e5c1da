"""``services.stack.probe``: compose's healthcheck counts failed probes and, at the limit, kills the hung service
under the container's init (never anything when pid 1 is not one)."""

import socket
import subprocess
import sys
import time

from services.stack import probe

from ..conftest import free_port


def test_a_hung_service_is_killed_after_the_failures_in_a_row(tmp_path):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen()  # accepts, never answers: a hung server
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/_dogops/health"
    init = tmp_path / "docker-init"
    init.symlink_to(sys.executable)
    container = subprocess.Popen([str(init), "-c", "import subprocess, sys; sys.exit(-subprocess.call(['sleep', '60']))"])
    try:
        deadline = time.monotonic() + 10
        while not probe.service_pids(container.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(probe.service_pids(container.pid)) == 1
        young = [url, "--timeout", "0.3", "--failures", "1", "--state", str(tmp_path / "count"),
                 "--init-pid", str(container.pid)]
        assert probe.main(young) == 1 and container.poll() is None  # started under a minute ago: still starting
        args = [*young[:4], "3", *young[5:], "--grace", "0"]
        assert probe.main(args) == 1 and probe.main(args) == 1
        assert (tmp_path / "count").read_text() == "2"
        assert container.poll() is None  # two failures: not yet
        assert probe.main(args) == 1
        assert container.wait(10) == 9  # the service SIGKILLed: the "container" exits, its restart policy takes over
    finally:
        container.kill()
        hung.close()


def test_a_healthy_service_resets_the_count_and_only_a_container_init_has_a_service(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        state = tmp_path / "count"
        state.write_text("2")
        while probe.main([f"http://127.0.0.1:{port}/", "--state", str(state)]) != 0:
            assert time.monotonic() < deadline
            state.write_text("2")
            time.sleep(0.1)
        assert not state.exists()
    finally:
        server.kill()
    assert probe.service_pids(server.pid) == []  # an ordinary process is no container init: nothing to kill
