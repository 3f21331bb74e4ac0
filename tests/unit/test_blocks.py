"""The block readers (CSV, NDJSON): cut at record boundaries, numbered like the file, checked against independent parsers."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import random
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from conduit.connectors.base import RECHECK, ROW_NUMBER
from conduit.connectors.files import blocks
from conduit.connectors.files.options import CsvOptions

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
    monkeypatch.setattr(blocks, "BLOCK", block)
    text = messy_csv(200, seed=block + skip)
    frames = list(blocks.csv(io.BytesIO(text.encode()), CsvOptions(), NAMES, skip, batch_size))
    assert all(0 < f.height <= batch_size for f in frames)
    got = pl.concat(frames)
    assert got.columns == [ROW_NUMBER, *NAMES, RECHECK]
    assert [tuple(r) for r in got.drop(RECHECK).iter_rows()] == reference(text, skip)
    assert got.get_column(RECHECK).to_list() == [r[-1] == "" for r in reference(text, skip)]


def test_a_record_longer_than_a_block_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK", 16)
    long = "x\n" * 100
    text = f'id,note,amount\n1,"{long}",2\n3,y,4\n'
    got = pl.concat(list(blocks.csv(io.BytesIO(text.encode()), CsvOptions(), NAMES, 0, 10)))
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
    assert blocks.boundary(data, quote) == want


def test_many_blocks_with_a_bom_skipped_lines_a_gzip_and_a_ragged_row_deep_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the row after the bad one is neither lost nor loaded twice, across block cuts."""
    monkeypatch.setattr(blocks, "BLOCK", 256)
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


def ndjson_lines(rows: int, seed: int) -> list[str]:
    """NDJSON lines with escapes, unicode, nulls, nested values and blank lines between them."""
    rng = random.Random(seed)
    notes = ["plain", 'say "hi"', "two\nlines", "ünïcode €", None, "{not: json}"]
    out = []
    for i in range(1, rows + 1):
        out.append(json.dumps({"id": i, "note": rng.choice(notes), "tags": [rng.randint(0, 9) for _ in range(rng.randint(0, 3))], "x": {"y": i * 0.5}}))
        if rng.random() < 0.1:
            out.append("   ")
    return out


@pytest.mark.parametrize("block", [50, 700])
@pytest.mark.parametrize(("skip", "batch_size"), [(0, 9), (33, 1000), (120, 17)])
def test_ndjson_blocks_equal_pythons_json(monkeypatch: pytest.MonkeyPatch, block: int, skip: int, batch_size: int) -> None:
    monkeypatch.setattr(blocks, "BLOCK", block)
    lines = ndjson_lines(150, seed=block + skip)
    schema = pl.Schema({"id": pl.Int64, "note": pl.String, "tags": pl.List(pl.Int64), "x": pl.Struct({"y": pl.Float64})})
    frames = list(blocks.ndjson(io.BytesIO("\n".join(lines).encode()), schema, skip, batch_size))
    assert all(0 < f.height <= batch_size for f in frames)
    got = pl.concat(frames)
    want = [json.loads(line) for line in lines if line.strip()]
    assert got.get_column(ROW_NUMBER).to_list() == list(range(skip + 1, len(want) + 1))
    assert got.drop(ROW_NUMBER).to_dicts() == want[skip:]


def test_big_ndjson_with_a_bad_line_deep_inside_loads_every_good_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK", 300)
    lines = ndjson_lines(400, seed=3)
    bad = next(i for i, line in enumerate(lines) if '"id": 300,' in line)
    lines[bad] = '{"id": 300, "note": oops}'
    (tmp_path / "data.ndjson").write_text("\n".join(lines) + "\n")
    source = "{name: f, type: ndjson, path: .}"
    result, loaded, dlq, manifest = run_one(tmp_path, {}, "{name: t, source: f, destination: local, path: data.ndjson}", source=source, batch_size=40)
    assert result.resources[0].status == "partial_success", result.resources[0].error
    assert sorted(loaded.get_column("id").to_list()) == [i for i in range(1, 401) if i != 300]
    assert dlq is not None
    assert dlq["_conduit_row_number"].to_list() == [300]
    assert_invariant(manifest, loaded, dlq)


@pytest.mark.parametrize("block", [300, 2048])
@pytest.mark.parametrize(("skip", "batch_size"), [(0, 1000), (45, 17)])
def test_typed_blocks_equal_text_blocks_cast(monkeypatch: pytest.MonkeyPatch, block: int, skip: int, batch_size: int) -> None:
    """With the column types, blocks Arrow types hold the values (and row numbers) the text read and the cast give; bad values make their blocks text."""
    from conduit.coerce import Coercer

    monkeypatch.setattr(blocks, "BLOCK", block)
    special = {90: "1.234", 200: "12x", 240: ""}  # excess digits, not a number, blank (NULL, not bad)
    rows = list(csv.reader(io.StringIO(messy_csv(300, seed=block), newline="")))
    rows = [rows[0]] + [[r[0], r[1], special.get(int(r[0]), r[2])] for r in rows[1:]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    data = out.getvalue().encode()
    types = {"id": pl.Int64(), "amount": pl.Decimal(15, 2)}
    coercer = Coercer(types)

    def cast(frames: list[pl.DataFrame | pa.Table]) -> tuple[list[tuple], list[int]]:
        good, bad = [], []
        for frame in frames:
            df = frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)
            assert isinstance(df, pl.DataFrame)
            df = df.drop(RECHECK, strict=False).with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
            typed, mask = coercer.apply(df)
            good += [tuple(r) for r in typed.filter(~mask).iter_rows()]
            bad += df.filter(mask).get_column(ROW_NUMBER).to_list()
        return good, bad

    want = list(blocks.csv(io.BytesIO(data), CsvOptions(), NAMES, skip, batch_size))
    got = list(blocks.csv(io.BytesIO(data), CsvOptions(), NAMES, skip, batch_size, types=types))
    typed_notes = [n for f in got if isinstance(f, pa.Table) for n in f.column("note").to_pylist()]
    assert any('"' in n or "\n" in n for n in typed_notes)  # Arrow typed blocks with quoted fields: the comparison is of two readers
    text_rows = {n for f in got if isinstance(f, pl.DataFrame) for n in f.get_column(ROW_NUMBER).to_list()}
    assert {r for r in (90, 200) if r > skip} <= text_rows  # the blocks with a bad value were read as text
    assert all(0 < len(f) <= batch_size for f in got)
    assert cast(got) == cast(want)
    assert cast(got)[1] == [r for r in (90, 200) if r > skip]


@pytest.mark.parametrize("names", [["a", "b", "n"], ["n"]], ids=["three-columns", "one-column"])
def test_arrow_reads_every_block_it_takes_as_polars_does(names: list[str]) -> None:
    """Random records, quoted or not, with delimiters, doubled quotes, newlines and CRLF inside, some corrupted: where Arrow takes a block, its records equal Polars' text read cast.

    Empty lines among them (a stray line end) are Arrow's to refuse where there are several columns, the scan's in a one-column file.
    """
    from conduit.connectors.files.blocks import _ArrowCsv

    rng = random.Random(4)
    parser = _ArrowCsv.of(CsvOptions(), names, {"n": pl.Int64()})
    assert parser is not None
    chars = ["a", " ", "é", "\t", ",", '"', "\n", "\r\n", "x", "1"]

    def field(number: bool) -> str:
        body = rng.choice(["1", "-2", "", " 4", "5 ", "0x1", "1.0"]) if number else "".join(rng.choice(chars) for _ in range(rng.randint(0, 5)))
        return '"' + body.replace('"', '""') + '"' if rng.random() < 0.5 or any(c in body for c in ',"\n\r') else body

    taken, empty = 0, 0
    for _ in range(4000):
        text = rng.choice(["\n", "\r\n"]).join(",".join([*(field(False) for _ in names[1:]), field(True)]) for _ in range(rng.randint(1, 4))) + "\n"
        if rng.random() < 0.3:  # a stray quote, space, delimiter or line end
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(['"', ' "', '" ', ",", "\r", "\n", "x"]) + text[at:]
        parsed = parser.parse(text.encode())
        if parsed is None:
            continue
        taken += 1
        empty += "\n\n" in text
        polars = pl.read_csv(text.encode(), has_header=False, schema=dict.fromkeys(names, pl.String), empty_string_is_null=False)
        if isinstance(parsed, pl.DataFrame):  # Arrow read the records as text (a value did not type): Polars' text
            assert parsed.rows() == polars.rows(), repr(text)
            continue
        want = [(*r[:-1], None if r[-1].strip() == "" else int(r[-1])) for r in polars.rows()]
        assert [tuple(r.values()) for r in parsed.to_pylist()] == want, repr(text)
    assert taken > 500
    assert empty > 20 if len(names) > 1 else empty == 0  # blocks with an empty line inside a quoted field are Arrow's (outside one, Arrow refuses them)


@pytest.mark.parametrize("header", [True, False])
def test_typed_blocks_start_after_the_header_and_keep_empty_last_fields(monkeypatch: pytest.MonkeyPatch, header: bool) -> None:
    """The first block is Arrow's too (from its second line), and an empty last field is a value, not a reason to re-read the rest of the file."""
    monkeypatch.setattr(blocks, "BLOCK", 400)
    rows = [[str(i), f"{i}.{i % 100:02d}", "" if i % 3 else f"note {i}"] for i in range(1, 301)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(([["id", "amount", "note"]] if header else []) + rows)
    names = ["id", "amount", "note"]
    got = list(blocks.csv(io.BytesIO(out.getvalue().encode()), CsvOptions(header=header), names, 0, 1000, types={"id": pl.Int64(), "amount": pl.Decimal(10, 2)}))
    assert all(isinstance(f, pa.Table) for f in got)
    table = pa.concat_tables(got)
    assert table.column(ROW_NUMBER).to_pylist() == list(range(1, 301))
    assert table.column("id").to_pylist() == [int(r[0]) for r in rows]
    assert [str(v) for v in table.column("amount").to_pylist()] == [r[1] for r in rows]
    assert table.column("note").to_pylist() == [r[2] for r in rows]


@pytest.mark.parametrize("block", [300, 2048])
def test_text_read_by_arrow_equals_polars_text(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """``types={}`` (how the inference sample is read): every column text, read by Arrow where it reads as Polars does, the same rows and values as Polars' read."""
    monkeypatch.setattr(blocks, "BLOCK", block)
    data = messy_csv(400, seed=block).encode()
    want = pl.concat([f.drop(RECHECK) for f in blocks.csv(io.BytesIO(data), CsvOptions(), NAMES, 0, 10_000)])
    got = list(blocks.csv(io.BytesIO(data), CsvOptions(), NAMES, 0, 10_000, types={}))
    assert len(got) > 3 and all(isinstance(f, pa.Table) for f in got)
    frames = [pl.DataFrame(f) if isinstance(f, pa.Table) else f.drop(RECHECK) for f in got]
    assert pl.concat([f.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64)) for f in frames]).rows() == want.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64)).rows()


@pytest.mark.parametrize("window", [1, 2, 5, 64])
def test_scan_in_windows_finds_what_a_whole_block_check_finds(monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    """Patterns across the windows' edges (empty lines, CRs, ``0x``, quotes, non-ASCII) are found as a plain look at the whole block finds them."""
    monkeypatch.setattr(blocks, "WINDOW", window)
    rng = random.Random(window)
    chars = ["a", ",", '"', "\n", "\r", "0", "x", "X", "\u00e9", "1"]
    seen = set()
    for _ in range(3000):
        block = "".join(rng.choice(chars) for _ in range(rng.randint(0, 40))).encode()
        text = block.decode()
        empty = text.startswith(("\n", "\r")) or "\n\n" in text or "\n\r\n" in text or text.endswith("\r") or any(c == "\r" and n != "\n" for c, n in itertools.pairwise(text))
        want = None if empty or not blocks.quotes_well_placed(block, b'"', b",") else blocks.Scan(hex="0x" in text.lower(), ascii=text.isascii())
        assert blocks.scan(block, b'"', b",", ints=True) == want, repr(block)
        seen.add(want is None)
    assert seen == {True, False}


def test_a_block_holding_a_nul_comes_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed tables hold no NUL (the direct path then skips its scan for one): the block with one comes as text, for the transform to dead-letter."""
    monkeypatch.setattr(blocks, "BLOCK", 400)
    rows = [[str(i), f"{i}.50", f"note {i}" + ("\x00" if i == 150 else "")] for i in range(1, 301)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["id", "amount", "note"], *rows])
    got = list(blocks.csv(io.BytesIO(out.getvalue().encode()), CsvOptions(), ["id", "amount", "note"], 0, 1000, types={"id": pl.Int64(), "amount": pl.Decimal(10, 2)}))
    notes = [(f, f.column("note").to_pylist() if isinstance(f, pa.Table) else f.get_column("note").to_list()) for f in got]
    assert [n for _, ns in notes for n in ns] == [r[2] for r in rows]
    holding = [f for f, ns in notes if any("\x00" in n for n in ns)]
    assert len(holding) == 1 and isinstance(holding[0], pl.DataFrame)
    assert sum(isinstance(f, pa.Table) for f in got) >= 10


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("", id="direct"),
        pytest.param(", quality_checks: [{column: note, check: not_null, action: dlq}, {check: expression, expression: 'amount < 900', action: dlq, name: small}]", id="checks"),
        pytest.param(", write_mode: merge, primary_keys: [id]", id="merge"),
        pytest.param(", at: timestamp", id="a-cast-arrow-leaves-to-polars"),
    ],
)
def test_a_load_is_the_same_with_and_without_typed_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """End to end into DuckDB, a file of many blocks: the typed path loads and dead-letters exactly what the text path does."""
    monkeypatch.setattr(blocks, "BLOCK", 4096)
    rng = random.Random(5)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "amount", "day", "at", "note"])
    for i in range(1, 6001):
        amount = rng.choice([f"{rng.randint(0, 99999) / 100:.2f}", "", "1.234" if i % 997 == 0 else "5"])
        writer.writerow([i if i % 1501 else "x1", amount, f"2024-01-{rng.randint(1, 28):02d}", f"2024-01-02 03:04:{rng.randint(0, 59):02d}", rng.choice(["", "a,b", 'say "hi"', "plain"])])
    data = out.getvalue().encode()
    columns, rest = (extra, "") if extra.startswith(", at:") else ("", extra)
    resource = "{name: t, source: f, destination: local, path: data.csv, columns: {id: bigint, amount: 'decimal(10,2)'" + columns + "}" + rest + "}"
    runs = []
    typed_blocks: list[pa.Table] = []
    parse = blocks._ArrowCsv.parse
    monkeypatch.setattr(blocks._ArrowCsv, "parse", lambda self, block: typed_blocks.append(t) or t if isinstance(t := parse(self, block), pa.Table) else t)
    for typed in (True, False):
        if not typed:
            assert len(typed_blocks) > 20  # the first run did type most blocks
            monkeypatch.setattr(blocks._ArrowCsv, "of", classmethod(lambda cls, *a: None))
        work = tmp_path / str(typed)
        work.mkdir()
        result, loaded, dlq, manifest = run_one(work, {"data.csv": data}, resource, batch_size=700)
        assert result.resources[0].status == "partial_success", result.resources[0].error
        assert loaded is not None and dlq is not None
        assert_invariant(manifest, loaded, dlq)
        dead = dlq.sort("_conduit_row_number").select("_conduit_row_number", "_conduit_check", "_conduit_error").rows()
        runs.append((loaded.sort("id").rows(), dead, manifest))
    assert runs[0] == runs[1]
    assert len(runs[0][1]) >= 4  # the bad ids and decimals are dead letters either way
