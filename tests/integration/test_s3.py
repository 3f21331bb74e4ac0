"""S3 (moto's server on loopback) as source and destination, checked through s3fs/pyarrow/DuckDB directly."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
import s3fs
from cli_run import invoke

pytestmark = pytest.mark.s3


@pytest.fixture
def fs(s3_endpoint: str) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_endpoint, skip_instance_cache=True)


@pytest.fixture
def bkt(fs: s3fs.S3FileSystem) -> str:
    """A fresh bucket per test."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return name


def people(start: int, n: int) -> pl.DataFrame:
    ids = list(range(start, start + n))
    return pl.DataFrame({"id": ids, "name": [f"p{i}" for i in ids], "region": [["eu", "us", "ap"][i % 3] for i in ids], "amount": [i * 1.5 for i in ids]})


def put(fs: s3fs.S3FileSystem, path: str, df: pl.DataFrame, fmt: str) -> None:
    with fs.open(path, "wb") as fh:
        getattr(df, f"write_{fmt}")(fh)


def so(endpoint: str, **extra: object) -> str:
    return json.dumps({"endpoint_url": endpoint, **extra})


def project(tmp_path: Path, sources: str, destinations: str, resources: str) -> Path:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text(f"sources:\n{sources}\ndestinations:\n{destinations}\nresources:\n{resources}\n")
    return cfg


def duck(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet"])
def test_s3_files_to_duckdb(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str, fmt: str) -> None:
    put(fs, f"{bkt}/in/people-1.{fmt}", people(1, 5), fmt)
    put(fs, f"{bkt}/in/people-2.{fmt}", people(6, 4), fmt)
    put(fs, f"{bkt}/in/other.{fmt}", people(100, 3), fmt)
    cfg = project(
        tmp_path,
        f"  - {{name: lake, type: {fmt}, path: 's3://{bkt}/in/', storage_options: {so(s3_endpoint)}}}",
        "  - {name: wh, type: duckdb, path: w.duckdb}",
        f"  - {{name: people, source: lake, destination: wh, path: 'people-*.{fmt}'}}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert duck(tmp_path / "w.duckdb", "SELECT count(*), sum(id), min(name), max(amount) FROM people") == [(9, 45, "p1", 13.5)]


def test_s3_incremental_picks_up_new_objects(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str) -> None:
    put(fs, f"{bkt}/in/a.parquet", people(1, 5), "parquet")
    cfg = project(
        tmp_path,
        f"  - {{name: lake, type: parquet, path: 's3://{bkt}/in', storage_options: {so(s3_endpoint)}}}",
        "  - {name: wh, type: duckdb, path: w.duckdb}",
        "  - {name: people, source: lake, destination: wh, path: '*.parquet', incremental_column: id}",
    )
    assert invoke("run", str(cfg), "--no-progress")[0] == 0
    put(fs, f"{bkt}/in/b.parquet", people(6, 3), "parquet")  # a new object since the last run
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    assert duck(tmp_path / "w.duckdb", "SELECT count(*), count(DISTINCT id), max(id) FROM people") == [(8, 8, 8)]


def test_local_to_s3_parquet_partitioned(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str) -> None:
    (tmp_path / "data").mkdir()
    people(1, 30).write_parquet(tmp_path / "data" / "people.parquet")
    cfg = project(
        tmp_path,
        "  - {name: local, type: parquet, path: data}",
        f"  - {{name: lake, type: parquet, path: 's3://{bkt}/out', storage_options: {so(s3_endpoint)}, partition_by: [region]}}",
        "  - {name: people, source: local, destination: lake, path: people.parquet}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    files = sorted(p for p in fs.find(f"{bkt}/out/people") if p.endswith(".parquet"))
    assert {p.split("/")[3] for p in files} == {"region=ap", "region=eu", "region=us"}
    assert pq.read_schema(fs.open(files[0], "rb")).names == ["id", "name", "amount"]  # hive: key in the path only
    back = pl.scan_parquet(f"s3://{bkt}/out/people/**/*.parquet", hive_partitioning=True, storage_options={"aws_endpoint_url": s3_endpoint, "aws_allow_http": "true"}).collect()
    assert back.height == 30 and back.filter(pl.col("region") == "eu").get_column("id").sort().to_list() == [i for i in range(1, 31) if i % 3 == 0]
    manifest = json.loads(fs.cat(f"{bkt}/out/_conduit_tables/people.json"))
    assert sorted(f"{bkt}/out/people/{f}" for f in manifest["files"]) == files
    assert not fs.exists(f"{bkt}/out/_conduit_staging") or not fs.find(f"{bkt}/out/_conduit_staging")
    # replace: the new files take over, the old ones are gone
    people(100, 3).write_parquet(tmp_path / "data" / "people.parquet")
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    fs.invalidate_cache()
    assert len([p for p in fs.find(f"{bkt}/out/people") if p.endswith(".parquet")]) == 6  # append keeps both loads
    cfg.write_text(cfg.read_text().replace("path: people.parquet}", "path: people.parquet, write_mode: replace}"))
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    fs.invalidate_cache()
    back = pq.read_table(f"{bkt}/out/people", filesystem=fs, partitioning="hive")
    assert sorted(back.column("id").to_pylist()) == [100, 101, 102]


def test_s3_to_s3_compressed_csv_with_multipart(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")  # moto's request log
    big = pl.DataFrame({"id": range(120_000), "payload": [uuid.uuid4().hex * 2 for _ in range(120_000)]})
    put(fs, f"{bkt}/in/big.parquet", big, "parquet")
    block = 5 * 1024 * 1024  # S3's smallest part: files above it go up in several parts
    cfg = project(
        tmp_path,
        f"  - {{name: lake, type: parquet, path: 's3://{bkt}/in', storage_options: {so(s3_endpoint)}}}",
        f"  - {{name: out, type: csv, path: 's3://{bkt}/out', storage_options: {so(s3_endpoint, default_block_size=block)}, file_size_mb: 64}}",
        "  - {name: big, source: lake, destination: out, path: big.parquet, batch_size: 200000}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    files = [p for p in fs.find(f"{bkt}/out/big") if p.endswith(".csv")]
    assert len(files) == 1 and fs.info(files[0])["size"] > block
    uploads = [r.getMessage() for r in caplog.records if "?uploads" in r.getMessage() and "/out/_conduit_staging/" in r.getMessage()]
    assert uploads, "the staged file was not uploaded in parts"
    back = pl.read_csv(fs.open(files[0], "rb").read())
    assert back.height == 120_000 and back.get_column("id").sum() == sum(range(120_000))

    cfg.write_text(cfg.read_text().replace("file_size_mb: 64}", "file_size_mb: 64, compression: gzip}").replace("name: big,", "name: big_gz,"))
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    gz = [p for p in fs.find(f"{bkt}/out/big_gz") if not p.endswith(".json")]
    assert len(gz) == 1 and gz[0].endswith(".csv.gz")
    assert pl.read_csv(fs.open(gz[0], "rb", compression="gzip").read()).height == 120_000


def test_file_size_rolls_files(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str) -> None:
    (tmp_path / "data").mkdir()
    people(1, 40_000).write_parquet(tmp_path / "data" / "p.parquet")
    cfg = project(
        tmp_path,
        "  - {name: local, type: parquet, path: data}",
        f"  - {{name: lake, type: ndjson, path: 's3://{bkt}/out', storage_options: {so(s3_endpoint)}, file_size_mb: 0.5}}",
        "  - {name: people, source: local, destination: lake, path: p.parquet, batch_size: 5000}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 0, out
    files = [p for p in fs.find(f"{bkt}/out/people") if p.endswith(".ndjson")]
    assert len(files) > 2 and all(fs.info(p)["size"] < 1024 * 1024 for p in files)
    assert sum(pl.read_ndjson(fs.open(p, "rb").read()).height for p in files) == 40_000


def test_failed_run_leaves_nothing_visible(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str) -> None:
    put(fs, f"{bkt}/in/a-1.parquet", people(1, 5), "parquet")
    fs.pipe(f"{bkt}/in/a-2.parquet", b"PAR1 this is not parquet PAR1")  # the second file fails mid-run
    cfg = project(
        tmp_path,
        f"  - {{name: lake, type: parquet, path: 's3://{bkt}/in', storage_options: {so(s3_endpoint)}}}",
        f"  - {{name: out, type: parquet, path: 's3://{bkt}/out', storage_options: {so(s3_endpoint)}}}",
        "  - {name: a, source: lake, destination: out, path: 'a-*.parquet'}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 1, out
    fs.invalidate_cache()
    assert [p for p in fs.find(f"{bkt}/out") if p.endswith(".parquet")] == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        pytest.param("source_bucket", "bucket 'no-such-bucket-x' does not exist", id="wrong-source-bucket"),
        pytest.param("missing_key", "no parquet files match s3://{bkt}/in/missing.parquet", id="missing-key"),
        pytest.param("dest_bucket", "bucket 'no-such-bucket-y' does not exist", id="wrong-destination-bucket"),
        pytest.param("no_credentials", "no credentials found", id="no-credentials"),
    ],
)
def test_storage_errors_are_one_line(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, where: str, message: str) -> None:
    put(fs, f"{bkt}/in/a.parquet", people(1, 5), "parquet")
    src_bucket = "no-such-bucket-x" if where == "source_bucket" else bkt
    dst_bucket = "no-such-bucket-y" if where == "dest_bucket" else bkt
    key = "missing.parquet" if where == "missing_key" else "a.parquet"
    opts = so(s3_endpoint, skip_instance_cache=True)
    if where == "no_credentials":
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cfg = project(
        tmp_path,
        f"  - {{name: lake, type: parquet, path: 's3://{src_bucket}/in', storage_options: {opts}}}",
        f"  - {{name: out, type: parquet, path: 's3://{dst_bucket}/out', storage_options: {opts}}}",
        f"  - {{name: a, source: lake, destination: out, path: {key}}}",
    )
    code, out = invoke("run", str(cfg), "--no-progress")
    assert code == 1, out
    line = next(ln for ln in out.splitlines() if "a: failed: " in ln)
    assert message.format(bkt=bkt) in line, out
    assert "Traceback" not in out


@pytest.mark.parametrize("fault", ["staged:1", "publish"])  # three small files share one chunk: killed after it committed
def test_killed_run_shows_nothing_then_resume_loads_once(tmp_path: Path, fs: s3fs.S3FileSystem, bkt: str, s3_endpoint: str, fault: str) -> None:
    (tmp_path / "data").mkdir()
    for i in range(3):
        people(i * 1000, 1000).write_parquet(tmp_path / "data" / f"p{i}.parquet")
    cfg = project(
        tmp_path,
        "  - {name: local, type: parquet, path: data}",
        f"  - {{name: lake, type: parquet, path: 's3://{bkt}/out', storage_options: {so(s3_endpoint, key='testing', secret='testing')}}}",
        "  - {name: people, source: local, destination: lake, path: 'p*.parquet'}",
    )

    def conduit(*args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONDUIT_FAULT": fault}
        return subprocess.run([sys.executable, "-m", "conduit", "run", str(cfg), "--no-progress", *args], capture_output=True, text=True, env=env, timeout=120)

    killed = conduit(fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    fs.invalidate_cache()
    assert [p for p in fs.find(f"{bkt}/out/people") if p.endswith(".parquet")] == []  # readers see nothing
    resumed = conduit("--resume")
    assert resumed.returncode == 0, resumed.stderr
    fs.invalidate_cache()
    back = pq.read_table(f"{bkt}/out/people", filesystem=fs)
    ids = back.column("id").to_pylist()
    assert len(ids) == 3000 and len(set(ids)) == 3000
    assert fs.find(f"{bkt}/out/_conduit_staging") == []
