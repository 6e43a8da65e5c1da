"""What ``dogops``'s commands share: subcommands whose modules are imported only when the command line names them
(so ``dogops --help`` imports no boto3, optuna or torch), and ``--json`` (one JSON document on stdout, every other
line on stderr)."""

import argparse
import contextlib
import importlib
import os
import sys


class LazyParser(argparse.ArgumentParser):
    """A parser whose arguments ``add`` (``"module:function"``, called with the parser) adds only when it parses:
    as a subcommand, only when the command line names it."""

    def __init__(self, *args, add: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add = add

    def parse_known_args(self, args=None, namespace=None):
        if self._add:
            module, _, function = self._add.partition(":")
            self._add, add = None, getattr(importlib.import_module(module), function)
            add(self)
        return super().parse_known_args(args, namespace)


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout (the keys are in "
                        "README's \"Machine-readable output\"); progress and log lines go to stderr")


class ExitWith(SystemExit):
    """Exit ``code`` after ``--json`` printed ``document``: a check that fails still answers what it found."""

    def __init__(self, code: int, document):
        super().__init__(code)
        self.document = document


@contextlib.contextmanager
def stdout_to_stderr():
    """Within: what is printed goes to stderr, Python's ``print`` and the subprocesses' output (file descriptor 1)
    alike, so that stdout carries nothing but the JSON document printed after."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
