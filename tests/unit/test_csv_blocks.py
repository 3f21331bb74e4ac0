"""The block CSV reader: cut at record boundaries, numbered like the file, checked against Python's csv module."""

from __future__ import annotations

import csv
import gzip
import io
import random
import sys
from pathlib import Path

import polars as pl
import pytest

from conduit.connectors import _csvblocks
from conduit.connectors.base import RECHECK, ROW_NUMBER
from conduit.connectors.files import CsvOptions

sys.path.insert(0, str(Path(__file__).parent / "quality"))
from helpers import assert_invariant, run_one

NAMES = ["id", "note", "amount"]


def messy_csv(rows: int, seed: int) -> str:
    """A header and ``rows`` records whose notes hold quotes, delimiters, CRLF and newlines."""
    rng = random.Random(seed)
    pieces = ["plain", 'say "hi"', "a,b", "two\nlines", "three\nshort\nlines", "", "tab\there", "crlf\r\ninside", "ünïcode €"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(NAMES)
    for i in range(1, rows + 1):
        writer.writerow([i, rng.choice(pieces) * rng.randint(1, 3), f"{rng.randint(0, 10_000)}.{rng.randint(0, 99):02d}"])
    return out.getvalue()


def reference(text: str, skip: int) -> list[tuple[int, str, str, str]]:
    """(row number, fields...) of every record after ``skip``, by Python's csv module."""
    records = list(csv.reader(io.StringIO(text, newline="")))[1:]
    return [(n, *rec) for n, rec in enumerate(records, start=1) if n > skip]  # type: ignore[misc]


@pytest.mark.parametrize("block", [61, 500, 4096])
@pytest.mark.parametrize(("skip", "batch_size"), [(0, 7), (0, 1000), (37, 50), (150, 13)])
def test_blocks_equal_a_whole_file_parse(monkeypatch: pytest.MonkeyPatch, block: int, skip: int, batch_size: int) -> None:
    monkeypatch.setattr(_csvblocks, "BLOCK", block)
    text = messy_csv(200, seed=block + skip)
    frames = list(_csvblocks.batches(io.BytesIO(text.encode()), CsvOptions(), NAMES, skip, batch_size))
    assert all(0 < f.height <= batch_size for f in frames)
    got = pl.concat(frames)
    assert got.columns == [ROW_NUMBER, *NAMES, RECHECK]
    assert [tuple(r) for r in got.drop(RECHECK).iter_rows()] == reference(text, skip)
    assert got.get_column(RECHECK).to_list() == [r[-1] == "" for r in reference(text, skip)]


def test_a_record_longer_than_a_block_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_csvblocks, "BLOCK", 16)
    long = "x\n" * 100
    text = f'id,note,amount\n1,"{long}",2\n3,y,4\n'
    got = pl.concat(list(_csvblocks.batches(io.BytesIO(text.encode()), CsvOptions(), NAMES, 0, 10)))
    assert got.select(ROW_NUMBER, "note").rows() == [(1, long), (2, "y")]


@pytest.mark.parametrize(
    ("data", "quote", "want"),
    [
        (b'1,"a\nb"\n2,c', '"', 7),
        (b'1,"a\nb', '"', -1),
        (b'1,""""\n2,"x\n', '"', 6),
        (b"1,'a\n2,b\n", None, 8),
        (b"no newline", '"', -1),
    ],
)
def test_boundary_is_the_last_newline_outside_quotes(data: bytes, quote: str | None, want: int) -> None:
    assert _csvblocks.boundary(data, quote) == want


def test_many_blocks_with_a_bom_skipped_lines_a_gzip_and_a_ragged_row_deep_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the row after the bad one is neither lost nor loaded twice, across block cuts."""
    monkeypatch.setattr(_csvblocks, "BLOCK", 256)
    body = messy_csv(400, seed=7).split("\n", 1)[1]
    lines = body.split("\n")
    text = "\ufeffexported by a tool\n" + ",".join(NAMES) + "\n" + body.replace("\n250,", "\n250,extra,", 1)
    assert len(lines) > 400  # quoted newlines inside
    (tmp_path / "data.csv.gz").write_bytes(gzip.compress(text.encode()))
    source = "{name: f, type: csv, path: ., options: {skip_rows: 1}}"
    resource = "{name: t, source: f, destination: local, path: data.csv.gz, columns: {id: bigint}}"
    result, loaded, dlq, manifest = run_one(tmp_path, {}, resource, source=source, batch_size=40)
    assert result.resources[0].status == "partial_success", result.resources[0].error
    want = [r for r in reference(",".join(NAMES) + "\n" + body, 0) if r[0] != 250]
    assert sorted(loaded.select("id", "note").rows()) == sorted((int(r[1]), r[2]) for r in want)
    assert dlq is not None
    assert dlq["_conduit_row_number"].to_list() == [250]
    assert_invariant(manifest, loaded, dlq)


def test_gzip_in_another_encoding_is_decompressed_before_it_is_decoded(tmp_path: Path) -> None:
    text = "id,note,amount\n1,café,1.5\n2,naïve,2.5\n"
    (tmp_path / "data.csv.gz").write_bytes(gzip.compress(text.encode("latin-1")))
    source = "{name: f, type: csv, path: ., options: {encoding: latin-1}}"
    result, loaded, dlq, manifest = run_one(tmp_path, {}, "{name: t, source: f, destination: local, path: data.csv.gz}", source=source)
    assert result.resources[0].status == "success", result.resources[0].error
    assert sorted(loaded.select("id", "note").rows()) == [(1, "café"), (2, "naïve")]
    assert dlq is None
    assert_invariant(manifest, loaded, dlq)
