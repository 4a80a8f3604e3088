"""Shared test helpers: ``run_cli``. Tests mirror the layers: ``core/`` (pure, no server, no
hardware), ``shell/`` (recorded hardware answers replayed, files), ``cli/`` (the entry point),
``integration/`` (real Xinference servers); ``support/`` holds paths, fixtures and stand-ins."""

from __future__ import annotations

import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import pytest
from support.paths import EXAMPLES, ROOT, SHARED  # noqa: F401  (re-exported for older imports)


@pytest.fixture
def run_cli():
    """Run `xinf-plan ARGS` in-process through the real entry point.

    Returns (exit_code, stdout, stderr), exactly what a user's shell would see.
    """
    from xinf_planner.cli.main import main

    def _run(*args, input: str | None = None):
        out, err = StringIO(), StringIO()
        code = 0
        old_stdin = sys.stdin
        if input is not None:
            sys.stdin = StringIO(input)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main([str(a) for a in args])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdin = old_stdin
        return code, out.getvalue(), err.getvalue()

    return _run
