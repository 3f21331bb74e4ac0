"""More resources than workers: the largest starts first; results stay in config order."""

from __future__ import annotations

from pathlib import Path

import duckdb

import conduit


def test_the_largest_resource_starts_first_when_they_do_not_all_fit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b"):
        (data / f"{name}.csv").write_text("id,v\n" + "".join(f"{i},x{i}\n" for i in range(10)))
    (data / "c.csv").write_text("id,v\n" + "".join(f"{i},value-{i}\n" for i in range(200_000)))
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(
        "sources: [{name: files, type: csv, path: data/}]\n"
        "destinations: [{name: local, type: duckdb, path: w.duckdb}]\n"
        "resources:\n" + "".join(f"  - {{name: {n}, source: files, destination: local, path: {n}.csv}}\n" for n in ("a", "b", "c"))
    )
    result = conduit.run(cfg, workers=2)
    assert [(r.name, r.status, r.rows_written) for r in result.resources] == [("a", "success", 10), ("b", "success", 10), ("c", "success", 200_000)]
    with duckdb.connect(str(tmp_path / ".conduit" / "conduit.duckdb"), read_only=True) as con:
        started = dict(con.execute("SELECT resource, started_at FROM resource_runs").fetchall())
    assert started["c"] < started["b"]  # c and a took the two workers; b waited for one
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM main.c").fetchall() == [(200_000, 200_000)]
