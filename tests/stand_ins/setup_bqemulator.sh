#!/usr/bin/env bash
# Set up the BigQuery stand-in (bqemulator) in its own virtualenv; idempotent.
#
# bqemulator needs DuckDB's spatial extension, which cannot be downloaded at run time on
# an offline machine, so it gets a pinned DuckDB plus the extension's wheel from PyPI,
# isolated from the project's venv (which has a newer DuckDB). Usage:
#   tests/stand_ins/setup_bqemulator.sh [VENV_DIR]     (default: .venv-bqemu)
# Prints the path of the bqemulator executable on success.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${1:-${CONDUIT_BQEMU_VENV:-.venv-bqemu}}"
PINS=("bqemulator==1.4.*" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" "numpy>=1.26,<3")
STAMP="$VENV/.conduit-pins"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "${PINS[*]}" && -x "$VENV/bin/bqemulator" ]]; then
  echo "$VENV/bin/bqemulator"
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2
EXT=$("$VENV/bin/python" - <<'PY'
import pathlib, duckdb_extension_spatial as m
base = pathlib.Path(m.__file__).parent
found = sorted(base.rglob("spatial.duckdb_extension"))
print(found[0] if found else "")
PY
)
if [[ -z "$EXT" ]]; then
  echo "setup_bqemulator: spatial extension file not found in duckdb-extension-spatial" >&2
  exit 1
fi
"$VENV/bin/python" -c "import duckdb; c = duckdb.connect(); c.execute(\"INSTALL '$EXT'\"); c.execute('LOAD spatial')" >&2
echo "${PINS[*]}" > "$STAMP"
echo "$VENV/bin/bqemulator"
