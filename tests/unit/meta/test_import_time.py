"""`conduit --help` must not import polars, pyarrow or duckdb (they cost seconds)."""

import subprocess
import sys


def test_help_imports_no_heavy_library() -> None:
    code = "import sys; from conduit.cli import cli; from click.testing import CliRunner; r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; print(','.join(m for m in ('polars', 'pyarrow', 'duckdb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
