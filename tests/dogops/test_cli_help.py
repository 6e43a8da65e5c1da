"""``dogops --help`` (and a command's ``--help``) answers without importing what the commands run on: each
command's module is imported when the command line names it."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "optuna", "boto3", "botocore", "moto", "matplotlib")
PROBE = """
import json, sys
from dogops.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["promote", "--help"], ["destroy", "--help"], ["status", "--help"],
                                  ["promote", "plan", "--help"], ["logs", "--help"],
                                  ["capacity", "--help"]])
def test_help_imports_none_of_the_heavy_modules(argv):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60,
                            check=True)
    imported = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert "dogops" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "usage: dogops" in result.stdout


def test_the_top_level_help_lists_the_commands_loaded_later():
    result = subprocess.run([sys.executable, "-m", "dogops.cli", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    for command in ("promote", "destroy", "status", "up", "tune", "logs", "capacity"):
        assert f"    {command} " in result.stdout, command
