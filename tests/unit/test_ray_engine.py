"""The Ray engine's driver-side pieces that need no cluster: the missing extra, what travels to workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conduit import _secrets
from conduit.cli import main
from conduit.engines.ray_engine import import_ray, referenced_variables, worker_env
from conduit.errors import ConfigError, UsageError
from conduit.project import load_project


def test_a_missing_extra_is_a_usage_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'conduit-load\[ray\]'"):
        import_ray()


def test_cli_engine_ray_without_the_extra_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    (tmp_path / "ingest.yml").write_text("sources: [{name: f, type: csv, path: .}]\ndestinations: [{name: d, type: duckdb}]\nresources: [{name: a, source: f, destination: d, path: a.csv}]\n")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path / "ingest.yml"), "--engine", "ray", "--no-progress"])
    assert exit_info.value.code == 2
    assert "error: the ray engine needs Ray: pip install 'conduit-load[ray]'" in capsys.readouterr().err


def test_engine_in_ingest_yml_is_validated(tmp_path: Path) -> None:
    (tmp_path / "ingest.yml").write_text("engine: {type: spark}\nsources: []\ndestinations: []\nresources: []\n")
    with pytest.raises(ConfigError, match=r"ingest.yml:1: engine.type: "):
        load_project(tmp_path / "ingest.yml")


def test_referenced_variables_skip_escapes_and_repeat_once() -> None:
    assert referenced_variables("a: ${A}\nb: ${B:-x} $${C} ${A}") == ["A", "B"]


def test_workers_get_only_the_variables_the_config_uses_and_they_become_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "ingest.yml"
    cfg.write_text("destinations: [{name: d, type: postgresql, connection_string: '${PG_URL_X}'}]\npath: ${FROM_DOTENV} ${UNSET_ONE:-d}\n")
    (tmp_path / ".env").write_text("FROM_DOTENV=dotenv-value-123\nNOT_USED=1\n")
    environ = {"PG_URL_X": "postgresql://u:pw-ray-test-42@h/db", "HOME": "/root", "CONDUIT_WORKER_FAULT": "read:3", "CONDUIT_FAULT": "staged"}
    env = worker_env(cfg, True, environ)
    assert env == {"PG_URL_X": "postgresql://u:pw-ray-test-42@h/db", "FROM_DOTENV": "dotenv-value-123", "CONDUIT_FAULT": "read:3"}
    assert "pw-ray-test-42" not in _secrets.redact("postgresql://u:pw-ray-test-42@h/db was refused")
    assert worker_env(cfg, False, environ) == {"CONDUIT_FAULT": "read:3"}


def test_help_does_not_import_ray() -> None:
    code = "import sys; from conduit.cli import cli; from click.testing import CliRunner; r = CliRunner().invoke(cli, ['run', '--help']); assert r.exit_code == 0, r.output; assert '--engine' in r.output; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_driver_copies_dead_letters_a_worker_wrote_on_another_machine(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from conduit.dead_letters import DeadLetters
    from conduit.engines.base import ChunkDone, PartJob, PartOutcome
    from conduit.engines.ray_worker import land

    letters = DeadLetters(tmp_path / "dlq", "run1", "events")
    existing = letters._part(7)
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"already here (a shared filesystem)")
    advanced: list[int] = []
    runner = SimpleNamespace(plan=SimpleNamespace(dead_letters=lambda: letters, dest=None, load=None, advance=advanced.append))
    outcome = PartOutcome(PartJob("events", "run1_events", (), 7, 9), [ChunkDone(7, "a", 10, 9), ChunkDone(8, "a", 20, 10)], rows_read=20)
    shipped = {existing.name: b"the worker's copy", letters._part(8).name: b"only on the worker"}
    assert land(runner, (outcome, [], shipped)) is outcome  # type: ignore[arg-type]
    assert existing.read_bytes() == b"already here (a shared filesystem)"
    assert letters._part(8).read_bytes() == b"only on the worker"
    assert advanced == [20]
