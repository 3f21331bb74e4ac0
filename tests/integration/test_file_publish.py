"""The file destinations' publish protocol under crashes, on a local folder and on S3 (moto).

Drives the destination directly (stage, a publish that dies half-way, retry or abort) and
checks what a reader listing the table folder would see.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from conduit.config import ResolvedTable
from conduit.connectors.base import Load, StagedChunk
from conduit.connectors.files.destination import FileDestinationOptions
from conduit.connectors.files.formats import ParquetDestination
from conduit.errors import DestinationError


class Crash(Exception):
    """Stands in for a killed process."""


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if request.param == "local":
        return str(tmp_path / "lake"), {}
    endpoint = request.getfixturevalue("s3_endpoint")
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True).mkdir(name)
    return f"s3://{name}/lake", {"endpoint_url": endpoint}


def dest(root: tuple[str, dict[str, Any]], tmp_path: Path) -> ParquetDestination:
    return ParquetDestination("lake", FileDestinationOptions(path=root[0], storage_options=root[1]), tmp_path)


def load_of(mode: str = "append", run: str | None = None, **opts: Any) -> Load:
    run = run or uuid.uuid4().hex[:8]
    schema = pa.schema([("id", pa.int64()), ("k", pa.string())])
    return Load(f"{run}_t", run, "t", "t", ResolvedTable(write_mode=mode, **opts), schema=schema)  # type: ignore[arg-type]


def stage_rows(d: ParquetDestination, load: Load, ids: list[list[int]]) -> None:
    for n, chunk in enumerate(ids):
        batch = pa.record_batch({"id": pa.array(chunk, pa.int64()), "k": pa.array([f"k{i % 2}" for i in chunk])})
        d.stage(load, StagedChunk(n, "src", 0, 0), pa.RecordBatchReader.from_batches(batch.schema, [batch]))


def visible(d: ParquetDestination) -> list[int]:
    """The ids a reader listing the table folder sees."""
    d.fs.invalidate_cache()
    files = d._data_files(d.table_dir("t"))
    return sorted(i for f in files for i in pq.read_table(d.fs.open(d._abs(f), "rb")).column("id").to_pylist())


def crash_on(d: ParquetDestination, monkeypatch: pytest.MonkeyPatch, when: Callable[[str], bool]) -> None:
    """Make the destination's JSON writes die for paths matching ``when``."""
    real = d._write_json

    def write(path: str, data: dict[str, Any]) -> None:
        if when(path):
            raise Crash(path)
        real(path, data)

    monkeypatch.setattr(d, "_write_json", write)


def test_crash_before_commit_then_abort_leaves_nothing(root: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = dest(root, tmp_path)
    base = load_of()
    stage_rows(d, base, [[1, 2]])
    d.publish(base)
    load = load_of()
    stage_rows(d, load, [[10, 11], [12]])
    crash_on(d, monkeypatch, lambda p: "/_conduit_loads/" in p)  # files moved, record not written
    with pytest.raises(DestinationError, match="_conduit_loads"):
        d.publish(load)
    monkeypatch.undo()
    assert visible(d) == [1, 2, 10, 11, 12]  # the window a crash can leave: new files moved, load not recorded
    d.abort(load)
    assert visible(d) == [1, 2]
    assert not d.is_published(load)
    assert not d.fs.exists(d.staging(load))


def test_publish_retry_after_crash_is_exactly_once(root: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = dest(root, tmp_path)
    load = load_of()
    stage_rows(d, load, [[1, 2], [3]])
    crash_on(d, monkeypatch, lambda p: "/_conduit_loads/" in p)
    with pytest.raises(DestinationError, match="_conduit_loads"):
        d.publish(load)
    monkeypatch.undo()
    fresh = dest(root, tmp_path)  # a new process resuming the run
    assert not fresh.is_published(load)
    assert [c.rows for c in fresh.staged(load)] == [2, 1]
    assert fresh.publish(load) == 3
    assert visible(fresh) == [1, 2, 3]
    assert fresh.is_published(load) and fresh.publish(load) == 0
    assert visible(fresh) == [1, 2, 3]


def test_replace_drops_old_files_only_after_commit(root: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = dest(root, tmp_path)
    old = load_of()
    stage_rows(d, old, [[1, 2]])
    d.publish(old)
    new = load_of("replace")
    stage_rows(d, new, [[7, 8]])
    crash_on(d, monkeypatch, lambda p: "/_conduit_tables/" in p)  # committed, cleanup dies
    assert d.publish(new) == 2  # the load is committed; cleanup is left for later
    monkeypatch.undo()
    assert visible(d) == [1, 2, 7, 8]  # old files still there: never removed before the new ones are in
    again = dest(root, tmp_path)
    assert again.is_published(new)  # finishes the interrupted cleanup
    assert visible(again) == [7, 8]
    assert not again.fs.exists(again.staging(new))


def test_partitioned_replace_and_manifest(root: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    d = dest(root, tmp_path)
    first = load_of("append", partition_by=["k"])
    stage_rows(d, first, [[1, 2, 3], [4]])
    d.publish(first)
    d.fs.invalidate_cache()
    folders = sorted({f.rsplit("/", 2)[1] for f in d._data_files(d.table_dir("t"))})
    assert folders == ["k=k0", "k=k1"]
    assert d.table_schema("t") == first.schema  # the manifest keeps the partition column
    second = load_of("replace", partition_by=["k"])
    stage_rows(d, second, [[6]])
    d.publish(second)
    d.fs.invalidate_cache()
    assert [f.rsplit("/", 2)[1] for f in d._data_files(d.table_dir("t"))] == ["k=k0"]
    assert visible(d) == [6]
    if "://" not in d.root:  # a directory scan of the table folder sees data files only
        import polars as pl

        assert pl.scan_parquet(d.table_dir("t"), hive_partitioning=True).collect().rows() == [(6, "k0")]
