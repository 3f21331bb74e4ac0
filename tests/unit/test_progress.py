"""Progress: rows/s and ETA where the total is known (CSV too), failed bars stay failed, '1 row', throttled plain lines."""

from __future__ import annotations

import io
import logging
import re
import threading
from pathlib import Path

import fsspec
import pytest
from rich.console import Console

import conduit
from conduit.connectors.files.estimate import text_rows
from conduit.logs import RunLog
from conduit.progress import RichReporter
from conduit.results import ResourceResult
from tests.cli_run import invoke


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "conduit", {}).get("event") == event]


def test_progress_records_come_at_most_once_per_resource_every_10_s(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    clock = Clock()
    log = RunLog(clock=clock)
    log.start("a", None)
    log.start("b", None)
    for _ in range(26):  # one batch a second for 25 s, on both resources
        log.advance("a", 10)
        log.advance("b", 1)
        clock.now += 1
    progress = [(r.conduit["resource"], r.conduit["rows"]) for r in _events(caplog, "progress")]  # type: ignore[attr-defined]
    assert progress == [("a", 110), ("b", 11), ("a", 210), ("b", 21)]


def test_progress_shows_rows_per_s_and_eta_when_the_total_is_known(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    clock = Clock()
    log = RunLog(clock=clock)
    log.start("orders", 1000)
    clock.now += 10
    log.advance("orders", 250)
    (record,) = _events(caplog, "progress")
    assert record.getMessage() == "orders: 250 of ~1,000 rows read (25 rows/s, ETA 30s)"
    assert (record.conduit["rows_per_s"], record.conduit["eta_s"], record.conduit["total"]) == (25.0, 30.0, 1000)  # type: ignore[attr-defined]


def test_progress_without_a_total_has_no_eta_and_says_1_row(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    clock = Clock()
    log = RunLog(clock=clock)
    log.start("orders", None)
    clock.now += 10
    log.advance("orders", 1)
    assert [r.getMessage() for r in _events(caplog, "progress")] == ["orders: 1 row read (0 rows/s)"]


def _bars() -> RichReporter:
    return RichReporter(Console(file=io.StringIO(), force_terminal=True, width=120))


def test_a_failed_resource_bar_stays_failed_where_it_stopped() -> None:
    bars = _bars()
    try:
        bars.start("orders", 1000)
        bars.advance("orders", 400)
        bars.finish(ResourceResult("orders", "failed", error="orders: boom"))
        task = bars.task("orders")
        assert bars.state("orders") == "failed"
        assert (task.completed, task.total, task.finished) == (400, 1000, False)
        assert "failed" in task.description and "red" in task.description
    finally:
        bars.close()


def test_a_successful_resource_bar_is_full_even_when_the_estimate_was_off() -> None:
    bars = _bars()
    try:
        bars.start("orders", 1000)
        bars.advance("orders", 600)
        assert bars.task("orders").total == 1000
        bars.advance("orders", 600)  # past the estimate: the total is unknown now (no ETA), never past 100%
        assert bars.task("orders").total is None
        bars.finish(ResourceResult("orders", "success", rows_read=1200, rows_written=1200, duration_s=1.0))
        task = bars.task("orders")
        assert bars.state("orders") == "done" and task.completed == task.total == 1200
    finally:
        bars.close()


def test_reporters_count_right_from_many_threads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conduit")
    bars, log = _bars(), RunLog(every_s=0)
    try:
        for r in (bars, log):
            r.start("orders", None)

        def work() -> None:
            for _ in range(500):
                bars.advance("orders", 1)
                log.advance("orders", 1)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bars.task("orders").completed == 4000
        assert max(r.conduit["rows"] for r in _events(caplog, "progress")) == 4000  # type: ignore[attr-defined]
    finally:
        bars.close()


def test_csv_row_estimate_is_exact_for_a_small_file_and_close_for_large_ones(tmp_path: Path) -> None:
    fs = fsspec.filesystem("file")
    files = []
    for i in range(3):
        p = tmp_path / f"part{i}.csv"
        p.write_text("id,name,amount\n" + "".join(f"{n},name{n % 97},{n * 1.5}\n" for n in range(200_000)))
        files.append((str(p), p.stat().st_size))
    assert text_rows(fs, files[:1], header=True, sample_bytes=1 << 30) == 200_000
    estimate = text_rows(fs, files, header=True)
    assert estimate is not None and abs(estimate - 600_000) / 600_000 < 0.05
    (tmp_path / "x.csv.gz").write_bytes(b"\x1f\x8b")
    assert text_rows(fs, [(str(tmp_path / "x.csv.gz"), 2)], header=True) is None


def test_a_csv_run_gives_its_bar_a_total_and_fills_it(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1234)))
    (tmp_path / "ingest.yml").write_text("sources: [{name: files, type: csv, path: .}]\ndestinations: [{name: local, type: duckdb}]\nresources: [{name: people, source: files, destination: local, path: data.csv}]\n")
    bars = _bars()
    starts: list[int | None] = []
    real_start = bars.start
    bars.start = lambda resource, total: (starts.append(total), real_start(resource, total))[1]  # type: ignore[method-assign]
    conduit.run(tmp_path / "ingest.yml", reporter=bars)
    assert starts == [1234]
    task = bars.task("people")
    assert bars.state("people") == "done" and task.completed == task.total == 1234


def test_no_progress_prints_plain_timestamped_lines_with_grammar(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id\n1\n")
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"state_path: {tmp_path / 's.duckdb'}\nsources: [{{name: files, type: csv, path: .}}]\ndestinations: [{{name: local, type: duckdb}}]\nresources: [{{name: people, source: files, destination: local, path: data.csv}}]\n")
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0
    lines = out.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    texts = [line[9:] for line in lines]
    assert texts[0].endswith(": started (1 resource)") and texts[1] == "people: started (~1 row)"
    assert re.fullmatch(r"people: 1 row loaded into main\.people in \d+\.\ds \(\d+ rows/s\)", texts[2])
    assert re.fullmatch(r"run \S+: success", texts[3]) and len(texts) == 4
    code, out = invoke("run", str(cfg), "--dry-run")
    assert code == 0 and out.splitlines()[-1] == "dry run: 1 resource planned, nothing loaded"
