"""Malformed NDJSON: each bad line is dead-lettered with file, line and raw text; good lines load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_invariant, run_one

GOOD = [json.dumps({"id": i, "name": f"n{i}", "amount": i + 0.5}) for i in range(1, 9)]


def source(infer_rows: int = 10_000) -> str:
    return "{name: f, type: ndjson, path: ., options: {infer_rows: " + str(infer_rows) + "}}"


@pytest.mark.parametrize(
    ("lines", "infer_rows", "bad"),
    [
        pytest.param(GOOD, 10_000, {}, id="clean"),
        pytest.param([*GOOD[:3], "{bad json", *GOOD[3:]], 10_000, {4: "line 4: not a JSON object"}, id="invalid-json-in-sample"),
        pytest.param([*GOOD[:6], '{"id": 7, "name": "x"', *GOOD[6:]], 3, {7: "line 7: not a JSON object"}, id="invalid-json-after-sample"),
        pytest.param([*GOOD[:5], '{"id": "six", "name": "x", "amount": 1}', *GOOD[5:]], 3, {6: "line 6: id: 'six' is not Int64"}, id="type-mismatch-after-sample"),
        pytest.param([*GOOD[:5], '{"id": 6, "name": "x", "amount": "lots"}', *GOOD[5:]], 3, {6: "line 6: amount: 'lots' is not Float64"}, id="float-mismatch"),
        pytest.param([*GOOD[:5], '{"id": "6", "name": "x", "amount": 1}', *GOOD[5:]], 3, {6: "line 6: "}, id="quoted-number-found-by-decoder"),
        pytest.param([*GOOD[:2], "", "[1, 2]", "   ", *GOOD[2:4], "42", *GOOD[4:]], 3, {4: "line 4: not a JSON object", 8: "line 8: not a JSON object"}, id="blank-lines-array-scalar"),
    ],
)
def test_malformed_ndjson(tmp_path: Path, lines: list[str], infer_rows: int, bad: dict[int, str]) -> None:
    content = "\n".join(lines) + "\n"
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.ndjson": content}, "{name: t, source: f, destination: local, path: data.ndjson}", source=source(infer_rows), batch_size=2)
    r = result.resources[0]
    assert r.status == ("partial_success" if bad else "success"), r.error
    assert_invariant(manifest, loaded, dlq)
    good_ids = sorted(json.loads(x)["id"] for x in GOOD)
    assert sorted(loaded["id"].to_list()) == good_ids
    if not bad:
        assert dlq is None
        return
    assert dlq is not None and dlq.height == len(bad)
    assert set(dlq["_conduit_check"]) == {"parse"}
    assert set(dlq["_conduit_source_file"]) == {str(tmp_path / "data.ndjson")}
    physical = {i + 1: text for i, text in enumerate(lines)}
    for error, raw in zip(dlq["_conduit_error"], dlq["_conduit_raw"], strict=True):
        line = int(error.split(":")[0].removeprefix("line "))
        assert error.startswith(bad[line]), error
        assert raw == physical[line]


def test_unreadable_ndjson_fails_the_resource(tmp_path: Path) -> None:
    """Bytes that are not text at all fail the resource with one clear line, nothing loaded."""
    result, _loaded, dlq, _ = run_one(tmp_path, {"data.ndjson": b'{"id": 1}\n\xff\xfe\x00garbage\n'}, "{name: t, source: f, destination: local, path: data.ndjson}", source=source())
    r = result.resources[0]
    assert r.status == "failed"
    assert "data.ndjson" in (r.error or "")
    assert "\n" not in (r.error or "").strip()
    assert dlq is None


def test_bad_lines_deep_in_a_big_file(tmp_path: Path) -> None:
    """Bad lines after batches were already staged: no row lost or loaded twice; the invariant holds."""
    lines = [json.dumps({"id": i, "v": i * 2}) for i in range(1, 6001)]
    lines[4000] = '{"id": 4001, "v": oops}'
    lines[4500] = '{"id": "x4501", "v": 1}'
    lines.insert(5000, "")
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.ndjson": "\n".join(lines)}, "{name: t, source: f, destination: local, path: data.ndjson}", source=source(1000), batch_size=500)
    assert result.resources[0].status == "partial_success"
    assert_invariant(manifest, loaded, dlq)
    assert loaded.height == 5998 and loaded["id"].n_unique() == 5998
    assert sorted(dlq["_conduit_row_number"].to_list()) == [4001, 4501]
    assert sorted(e.split(":")[0] for e in dlq["_conduit_error"]) == ["line 4001", "line 4501"]
