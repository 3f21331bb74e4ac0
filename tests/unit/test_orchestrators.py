"""The Airflow task and Dagster asset of docs/orchestrators.md, taken out of the doc and called.

Neither orchestrator is a dependency: each function that calls ``conduit.run`` is
compiled from the doc without its decorators, with ``INGEST_YML`` pointing at a small
project, and called with stand-ins for the orchestrator's objects (Dagster's
``MaterializeResult`` keeps its metadata). The calls, arguments and returned values are
the doc's own.
"""

from __future__ import annotations

import ast
import logging
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conduit.errors import RunFailed

DOC = Path(__file__).parents[2] / "docs" / "orchestrators.md"


def _functions() -> dict[str, ast.FunctionDef]:
    """Every function of the doc's Python blocks that calls ``conduit.run``, by name."""
    found = {}
    for block in re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.FunctionDef) and "conduit.run(" in ast.unparse(node):
                found[node.name] = node
    return found


class _Dagster(types.SimpleNamespace):
    """What the asset uses of ``dagster``: its context type and ``MaterializeResult``."""

    AssetExecutionContext = object

    @staticmethod
    def MaterializeResult(metadata: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": metadata}


def _compile(name: str, ingest_yml: Path) -> Callable[..., Any]:
    node = _functions()[name]
    node.decorator_list = []
    module = ast.fix_missing_locations(ast.Module(body=[node], type_ignores=[]))
    namespace: dict[str, Any] = {"INGEST_YML": str(ingest_yml), "dg": _Dagster()}
    exec(compile(module, str(DOC), "exec"), namespace)
    return namespace[name]


def _project(tmp_path: Path, failing: bool = False) -> Path:
    (tmp_path / "orders.csv").write_text("id,amount\n1,10.5\n2,20.25\n3,x\n" if failing else "id,amount\n1,10.5\n2,20.25\n3,7\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
state_path: {tmp_path / "state.duckdb"}
sources: [{{name: files, type: csv, path: .}}]
destinations: [{{name: local, type: duckdb, path: {tmp_path / "wh.duckdb"}}}]
resources:
  - name: orders
    source: files
    destination: local
    path: orders.csv
    columns: {{amount: "decimal(10,2)"}}
    max_dlq_rows: 0
""")
    return cfg


def test_the_doc_has_an_airflow_task_and_a_dagster_asset() -> None:
    assert set(_functions()) == {"conduit_orders", "load_orders", "orders"}


def test_the_airflow_task_returns_rows_per_resource(tmp_path: Path) -> None:
    assert _compile("load_orders", _project(tmp_path))() == {"orders": 3}


def test_the_dagster_asset_returns_its_rows_as_metadata_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    context = types.SimpleNamespace(log=logging.getLogger("dagster-stand-in"))
    out = _compile("orders", _project(tmp_path))(context)
    assert out["metadata"]["rows"] == 3 and out["metadata"]["rows_dlq"] == 0
    run_id = out["metadata"]["conduit_run_id"]
    assert f"conduit run {run_id}: 3 rows into main.orders" in caplog.messages
    assert [r.conduit["event"] for r in caplog.records if r.name == "conduit"][-1] == "run_end"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["load_orders", "orders"])
def test_a_failed_resource_fails_the_task(tmp_path: Path, name: str) -> None:
    fn = _compile(name, _project(tmp_path, failing=True))
    with pytest.raises(RunFailed, match=r"orders: .*max_dlq_rows") as info:
        fn(*([types.SimpleNamespace(log=logging.getLogger("x"))] if name == "orders" else []))
    assert info.value.result.resources[0].status == "failed"
