"""Run the CLI in-process through :func:`conduit.cli.main`, which owns the exit-code mapping."""

from __future__ import annotations

import contextlib
import io

from conduit.cli import main


def invoke(*args: str) -> tuple[int, str]:
    """``conduit ARGS``; returns (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()
