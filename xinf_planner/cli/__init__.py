"""The ``xinf-plan`` command line: a thin click group over ``shell`` and ``core``."""

from xinf_planner.cli.main import main

__all__ = ["main"]
