"""Runs netns_url_guard.py in a network namespace that has only loopback (`unshare -n`)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.url_fetch import is_public


def test_url_guard_inside_a_loopback_only_namespace(tmp_path, ml_base):
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("the URL guard tests need `unshare` (util-linux) and `ip` (iproute2)")
    inner = Path(__file__).with_name("netns_url_guard.py")
    command = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider " \
              f"--basetemp {tmp_path / 'inner'} {inner}"
    # The inner run serves this session's trained model (DOGOPS_TEST_ML_BASE) rather than training its own.
    result = subprocess.run(["unshare", "-n", "--", "sh", "-c", command], capture_output=True, text=True,
                            env={**os.environ, "DOGOPS_IN_NETNS": "1", "DOGOPS_TEST_ML_BASE": str(ml_base)},
                            cwd=Path(__file__).parents[2], timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]


EMBEDDED_IPV4 = [  # IPv6 forms that carry an IPv4 address are judged by it
    ("64:ff9b::8.8.8.8", True), ("64:ff9b::7f00:1", False), ("64:ff9b::a9fe:a9fe", False),  # NAT64
    ("64:ff9b:1::8.8.8.8", False), ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64: always refused
    ("2002:808:808::", True), ("2002:7f00:1::", False), ("2002:a00:1::1", False),  # 6to4
    ("::8.8.8.8", True), ("::127.0.0.1", False), ("::a9fe:a9fe", False), ("::", False),  # IPv4-compatible
    ("::ffff:8.8.8.8", True), ("::ffff:169.254.169.254", False),  # IPv4-mapped
    ("::ffff:0:808:808", True), ("::ffff:0:7f00:1", False),  # IPv4-translated
    ("2001:0:808:808::f7f7:f7f7", True),  # Teredo, server 8.8.8.8 and client 8.8.8.8 (stored inverted)
    ("2001:0:a00:1::f7f7:f7f7", False), ("2001:0:808:808::80ff:fffe", False),  # server 10.0.0.1, client 127.0.0.1
]


@pytest.mark.parametrize("address,public", [("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False),
                                            ("10.1.2.3", False), ("169.254.169.254", False), ("::1", False),
                                            ("::ffff:10.0.0.1", False), ("fd00:ec2::254", False),
                                            ("100.64.1.1", False), ("239.1.1.1", False), ("0.0.0.0", False),
                                            *EMBEDDED_IPV4])
def test_is_public(address, public):
    import ipaddress

    assert is_public(ipaddress.ip_address(address)) is public
