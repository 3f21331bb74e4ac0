"""Logs for orchestrators and CI: the ``conduit`` logger, --log-format json, --log-file, raise_on_error, one-line stored errors."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import duckdb
import pytest

import conduit
from conduit.errors import RunFailed
from tests.cli_run import invoke

EXPLODES = """
import polars as pl
from conduit.quality import register


def _boom(s):
    raise RuntimeError("boom in user code\\n\\nsecond line of the message")


@register("explodes")
def explodes(column: str) -> pl.Expr:
    return pl.col(column).map_batches(_boom, return_dtype=pl.Boolean)
"""


def _project(tmp_path: Path, rows: int = 2, failing: bool = False) -> Path:
    (tmp_path / "data.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows)))
    checks = "\n    quality_checks: [{column: id, check: explodes, action: dlq}]" if failing else ""
    if failing:
        (tmp_path / "checks.py").write_text(EXPLODES)
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"""
state_path: {tmp_path / "state.duckdb"}
sources: [{{name: files, type: csv, path: .}}]
destinations: [{{name: local, type: duckdb, path: {tmp_path / "wh.duckdb"}}}]
resources:
  - name: people
    source: files
    destination: local
    path: data.csv{checks}
""")
    return cfg


def _store_errors(tmp_path: Path) -> list[str]:
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT error FROM runs UNION ALL SELECT error FROM resource_runs").fetchall()
    return [r[0] for r in rows]


def test_stored_errors_are_one_line_and_the_traceback_is_only_shown_with_debug(tmp_path: Path) -> None:
    cfg = _project(tmp_path, failing=True)
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 1
    assert "Traceback" not in out
    assert "people: failed: RuntimeError: boom in user code\n" in out
    assert _store_errors(tmp_path) == ["people: RuntimeError: boom in user code", "RuntimeError: boom in user code"]
    code, out = invoke("--debug", "run", str(cfg), "--no-progress")
    assert code == 1
    assert "Traceback (most recent call last)" in out and 'checks.py", line 7, in _boom' in out
    assert all("\n" not in e for e in _store_errors(tmp_path))


def test_the_library_result_error_is_one_line(tmp_path: Path) -> None:
    result = conduit.run(_project(tmp_path, failing=True))
    assert result.resources[0].error == "RuntimeError: boom in user code"


def test_a_run_logs_its_events_to_the_conduit_logger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    result = conduit.run(_project(tmp_path, rows=3))
    records = [r for r in caplog.records if r.name == "conduit"]
    fields = [r.conduit for r in records]  # type: ignore[attr-defined]
    assert [f["event"] for f in fields] == ["run_start", "resource_start", "resource_end", "run_end"]
    assert {f["run_id"] for f in fields} == {result.run_id}
    end = fields[2]
    assert (end["resource"], end["status"], end["rows"], end["rows_read"], end["rows_dlq"]) == ("people", "success", 3, 3, 0)
    assert end["duration_s"] > 0 and end["rows_per_s"] > 0
    assert records[2].getMessage().startswith("people: 3 rows loaded into main.people in ")
    assert (fields[3]["status"], fields[3]["rows"]) == ("success", 3)


def test_a_failed_resource_is_an_error_record_with_its_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    conduit.run(_project(tmp_path, failing=True))
    ends = [r for r in caplog.records if getattr(r, "conduit", {}).get("event") == "resource_end"]
    assert [(r.levelname, r.conduit["error"]) for r in ends] == [("ERROR", "RuntimeError: boom in user code")]  # type: ignore[attr-defined]


def test_the_library_installs_no_handler_and_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert all(isinstance(h, logging.NullHandler) for h in logging.getLogger("conduit").handlers)
    conduit.run(_project(tmp_path))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_raise_on_error_raises_run_failed_carrying_the_result(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match=r"^run \S+ failed: RuntimeError: boom in user code$") as info:
        conduit.run(_project(tmp_path, failing=True), raise_on_error=True)
    assert info.value.result.status == "failed" and info.value.exit_code == 1
    assert isinstance(info.value, conduit.ConduitError)


def test_raise_on_error_returns_the_result_of_a_run_that_succeeded(tmp_path: Path) -> None:
    assert conduit.run(_project(tmp_path), raise_on_error=True).status == "success"


def test_log_format_json_makes_every_line_json_with_run_id_rows_and_timing(tmp_path: Path) -> None:
    code, out = invoke("run", str(_project(tmp_path, rows=5)), "--log-format", "json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]  # every line, the last one included
    assert [line["event"] for line in lines] == ["run_start", "resource_start", "resource_end", "run_end"]
    run_id = lines[0]["run_id"]
    assert all(line["run_id"] == run_id and line["level"] == "info" and line["ts"].endswith("+00:00") for line in lines)
    end = lines[2]
    assert (end["resource"], end["rows"], end["status"]) == ("people", 5, "success")
    assert isinstance(end["duration_s"], float) and isinstance(end["rows_per_s"], float)
    assert lines[1]["total"] == 5  # the CSV's rows, counted from its bytes


def test_log_format_json_reports_the_error_that_ends_the_command_as_json(tmp_path: Path) -> None:
    code, out = invoke("run", str(_project(tmp_path)), "--log-format", "json", "-r", "nosuch")
    assert code == 2
    (line,) = [json.loads(line) for line in out.splitlines()]
    assert (line["level"], line["event"], line["message"]) == ("error", "error", "error: -r nosuch matches no resource; resources: people; tags: none")


def test_log_format_json_with_debug_carries_the_traceback_in_a_field(tmp_path: Path) -> None:
    code, out = invoke("--debug", "run", str(_project(tmp_path, failing=True)), "--log-format", "json")
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    (tb,) = [line for line in lines if line["event"] == "traceback"]
    assert tb["level"] == "debug" and "RuntimeError: boom in user code" in tb["traceback"] and tb["run_id"] == lines[0]["run_id"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_file_gets_every_line(tmp_path: Path, fmt: str) -> None:
    log = tmp_path / "run.log"
    code, _ = invoke("run", str(_project(tmp_path)), "--no-progress", "--log-format", fmt, "--log-file", str(log))
    assert code == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    if fmt == "json":
        assert [json.loads(line)["event"] for line in lines] == ["run_start", "resource_start", "resource_end", "run_end"]
    else:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 INFO    people: 2 rows loaded into main\.people in .*", lines[2])
    code, _ = invoke("run", str(_project(tmp_path)), "--log-format", fmt, "--log-file", str(log), "-r", "nosuch")
    assert code == 2 and "-r nosuch matches no resource" in log.read_text().splitlines()[-1]


def test_secrets_are_redacted_in_json_lines(tmp_path: Path) -> None:
    cfg = _project(tmp_path)
    cfg.write_text(cfg.read_text() + "  - name: pg\n    source: files\n    destination: pg\n    path: data.csv\n")
    cfg.write_text(cfg.read_text().replace("destinations: [", "destinations: [{name: pg, type: postgresql, connection_string: 'postgresql://u:hunter2secret@127.0.0.1:1/db'}, "))
    code, out = invoke("run", str(cfg), "--log-format", "json")
    assert code == 1
    assert "hunter2secret" not in out
    assert all(json.loads(line) for line in out.splitlines())


def test_a_command_run_without_main_leaves_no_handler_behind(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conduit.cli import cli

    before = list(logging.getLogger("conduit").handlers)
    result = CliRunner().invoke(cli, ["run", str(_project(tmp_path)), "--no-progress", "--log-file", str(tmp_path / "x.log")])
    assert result.exit_code == 0 and "people: 2 rows loaded" in result.output
    assert logging.getLogger("conduit").handlers == before


def test_log_format_json_reports_a_bad_option_as_json(tmp_path: Path) -> None:
    code, out = invoke("run", str(_project(tmp_path)), "--log-format", "json", "--batch-size", "0")
    assert code == 2
    (line,) = [json.loads(line) for line in out.splitlines()]
    assert (line["event"], line["level"]) == ("error", "error") and "--batch-size" in line["message"]


def test_a_secret_that_json_would_escape_is_still_redacted() -> None:
    from conduit import _secrets
    from conduit.logs import JsonFormatter

    secret = 'pa"ss\\word-' + uuid.uuid4().hex
    _secrets.register(secret)
    record = logging.getLogger("conduit").makeRecord("conduit", logging.INFO, __file__, 0, f"connect failed with {secret}", (), None, extra={"conduit": {"event": "message", "error": [secret]}})
    line = JsonFormatter().format(record)
    assert "ss\\\\word-" not in line and "ss\\word-" not in line
    assert json.loads(line)["message"] == "connect failed with ***" and json.loads(line)["error"] == ["***"]


def test_a_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("run", str(_project(tmp_path)), "--log-file", str(tmp_path / "no" / "such" / "dir.log"))
    assert (code, out) == (2, f"error: --log-file {tmp_path / 'no' / 'such' / 'dir.log'}: No such file or directory\n")
    assert not (tmp_path / "state.duckdb").exists()  # nothing ran
