"""Output for people: one table writer, one progress reporter, and reports as a table or a
document (``--format json|yaml`` for scripts)."""

from __future__ import annotations

import sys
from typing import TextIO

import click

CREATING = "CREATING"


def table(rows, indent: str = "") -> list[str]:
    """Rows (the first is the header) as left-aligned columns two spaces apart."""
    rows = [[str(c) for c in row] for row in rows]
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def echo_report(ctx, report: dict, fmt: str, render_table, out_of_sync_code: int) -> None:
    """Print a status/diff report as a table or a document; exit with ``out_of_sync_code``
    when the server and the plan differ."""
    from xinf_planner.core.documents import dump_document

    if fmt == "table":
        click.echo(render_table(report))
    else:
        click.echo(dump_document(report, fmt), nl=False)
    if not report["in_sync"]:
        ctx.exit(out_of_sync_code)


class Reporter:
    """Progress lines: redrawn in place on a terminal, plain lines (on change) otherwise."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._drawn = 0
        self._last: dict[str, str] = {}

    def line(self, text: str) -> None:
        self._drawn = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def replica_progress(
        self, uid: str, replicas: list[dict], elapsed_s: float, progress: dict[str, float | None]
    ) -> None:
        """One line per replica of a launching model (shell/deploy/wait.Progress)."""
        self.replicas(
            [
                (
                    r.get("replica_model_uid") or uid,
                    f"{r.get('status')} {r.get('worker_address')} {r.get('gpu_idx')}",
                    replica_line(uid, r, elapsed_s, progress.get(r.get("replica_model_uid"))),
                )
                for r in replicas
            ]
        )

    def replicas(self, rows: list[tuple[str, str, str]]) -> None:
        """rows: (key, state, text) per replica; off a terminal a line is written only when
        the replica's state changes."""
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            for _, _, text in rows:
                self.stream.write("\x1b[2K" + text + "\n")
            self._drawn = len(rows)
            self.stream.flush()
            return
        for key, state, text in rows:
            if self._last.get(key) != state:
                self._last[key] = state
                self.stream.write(text + "\n")
        self.stream.flush()

    def end_replicas(self) -> None:
        self._drawn = 0


def replica_line(uid: str, rep: dict, elapsed: float, progress: float | None) -> str:
    status = rep.get("status") or CREATING
    if status == CREATING and progress is not None:
        status = f"{CREATING} {progress:4.0%}"
    gpus = rep.get("gpu_idx")
    gpu_text = ",".join(map(str, gpus)) if gpus else "cpu" if gpus == [] else "-"
    return (
        f"  {rep.get('replica_model_uid') or uid}  {status}  worker {rep.get('worker_address') or '-'}"
        f"  gpus {gpu_text}  {elapsed:5.1f}s"
    )
