"""Malformed CSV never crashes a run and never loses a row."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import assert_invariant, run_one

HEAD = "id,name,amount\n"


@pytest.mark.parametrize(
    ("content", "good", "bad_reasons", "options"),
    [
        pytest.param(HEAD + "1,a,1.5\n2,b,2.5\n", 2, [], "", id="clean"),
        pytest.param(HEAD + "1,a,1.5\n2,b,2.5,9\n3,c,3.5\n", 2, ["line 3: expected 3 fields, found 4"], "", id="too-many-fields"),
        pytest.param(HEAD + "1,a,1.5\n2,b\n3,c,3.5\n", 2, ["expected 3 fields, found 2"], "", id="too-few-fields"),
        pytest.param(HEAD + '1,a,1.5\n2,"b,2.5\n3,c,3.5\n4,d,4.5\n', 3, ["line 3: unbalanced quote"], "", id="unbalanced-quote"),
        pytest.param((HEAD + "1,a,1.5\n2,caf\xe9,2.5\n3,c,3.5\n").encode("latin-1"), 2, ["line 3: invalid utf-8 bytes (wrong encoding? set options.encoding)"], "", id="latin1-as-utf8"),
        pytest.param((HEAD + "1,a,1.5\n2,caf\xe9,2.5\n").encode("latin-1"), 2, [], "{encoding: latin-1}", id="latin1-declared"),
        pytest.param(HEAD + '1,"multi\nline",1.5\n2,b,2.5\n', 2, [], "", id="embedded-newline"),
        pytest.param(HEAD.replace("\n", "\r\n") + "1,a,1.5\r\n2,b,2.5\r\n", 2, [], "", id="crlf"),
        pytest.param("\ufeff" + HEAD + "1,a,1.5\n", 1, [], "", id="bom"),
        pytest.param("id;name;amount\n1;a;1.5\n2;b;2.5;x\n", 1, ["line 3: expected 3 fields, found 4"], "{delimiter: ';'}", id="semicolon-ragged"),
        pytest.param(HEAD + '1,"a,1.5\n2,b,2.5,7\n3,c,3.5\n', 1, ["line 2: unbalanced quote", "line 3: expected 3 fields, found 4"], "", id="quote-then-ragged"),
        pytest.param(HEAD + "1,a,1.5\n\n2,b,2.5\n", 2, [], "", id="blank-line"),
        pytest.param(HEAD + '1,,\n2,b,\n3,"",""\n', 3, [], "", id="empty-trailing-fields"),
    ],
)
def test_malformed_csv(tmp_path: Path, content, good: int, bad_reasons: list[str], options: str) -> None:
    source = "{name: f, type: csv, path: ., options: " + options + "}" if options else "{name: f, type: csv, path: .}"
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.csv": content}, "{name: t, source: f, destination: local, path: data.csv}", source=source)
    r = result.resources[0]
    assert r.status == ("partial_success" if bad_reasons else "success"), r.error
    assert loaded.height == good
    assert_invariant(manifest, loaded, dlq)
    if bad_reasons:
        assert dlq is not None
        assert set(dlq["_conduit_check"]) == {"parse"}
        for reason in bad_reasons:
            assert any(reason in e for e in dlq["_conduit_error"]), (reason, dlq["_conduit_error"].to_list())
        assert dlq["_conduit_raw"].null_count() == 0
        assert set(dlq["_conduit_source_file"]) == {str(tmp_path / "data.csv")}
    else:
        assert dlq is None


def test_ragged_row_after_first_batches_is_caught_mid_stream(tmp_path: Path) -> None:
    """A bad line deep in the file (after batches were already staged) does not lose or duplicate rows."""
    rows = "".join(f"{i},n{i},{i}.5\n" for i in range(1, 3001))
    content = HEAD + rows + "3001,x,1,extra\n" + "".join(f"{i},n{i},{i}.5\n" for i in range(3002, 4001))
    result, loaded, dlq, manifest = run_one(tmp_path, {"data.csv": content}, "{name: t, source: f, destination: local, path: data.csv}", batch_size=500)
    assert result.resources[0].status == "partial_success"
    assert loaded.height == 3999
    assert loaded["id"].n_unique() == 3999
    assert dlq["_conduit_row_number"].to_list() == [3001]
    assert_invariant(manifest, loaded, dlq)
