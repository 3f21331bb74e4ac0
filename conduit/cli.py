"""The ``conduit`` command: parse, call the library, render.

One place, :func:`main`, maps errors to exit codes: 0 success (dead letters allowed),
1 a resource failed, 2 usage or config error (nothing ran). Heavy libraries are
imported inside commands so ``conduit --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from conduit import _runtime
from conduit._text import plural
from conduit._version import __version__

if TYPE_CHECKING:
    from conduit.plan import ResourcePlan
    from conduit.store import Store

DEFAULT_CONFIG = "ingest.yml"
_config_arg = click.argument("config", default=DEFAULT_CONFIG, required=False, type=click.Path(path_type=Path))
_config_opt = click.option("--config", "-c", "config", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path), help="The ingest.yml.")
_target_opt = click.option("--target", "-t", "target", metavar="NAME", help="The target (dev, prod ...) of ingest.yml's targets; default $CONDUIT_TARGET, else default_target.")
_select_opt = click.option("-r", "--resource", "--select", "-s", "resources", multiple=True, metavar="SELECTOR", help="A resource name, a glob (orders_*) or tag:NAME (repeatable; default: every resource).")
_exclude_opt = click.option("--exclude", "-x", "exclude", multiple=True, metavar="SELECTOR", help="Leave out what this matches (same syntax; repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conduit")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Conduit loads data declaratively: files, object storage and databases into databases and files."""
    ctx.obj = {"debug": debug}


@cli.command()
@_config_arg
@_select_opt
@_exclude_opt
@_target_opt
@click.option("--resume", is_flag=True, help="Continue the newest interrupted run from its last checkpoint.")
@click.option("--full-refresh", is_flag=True, help="Ignore and reset incremental state.")
@click.option("--wait", is_flag=True, help="If another run is loading one of these resources, wait for it instead of exiting 1.")
@click.option("--dry-run", is_flag=True, help="Validate and show the plan; load nothing.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per batch through the pipeline.")
@click.option("--workers", type=click.IntRange(min=1), help="Resources (and parts of one resource) loaded at once; default: the machine's cores.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal); without, plain lines (at most one per resource every 10 s).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log lines on stderr: text, or json (one JSON object per line, no bars).")
@click.option("--log-file", type=click.Path(path_type=Path, dir_okay=False), help="Also append the log lines to this file.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Where part jobs run: this process (local) or a Ray cluster (ray); default: engine: in CONFIG, else local.")
@click.option("--address", help="The Ray cluster for --engine ray (host:port, ray://host:10001, auto); default: engine.address, RAY_ADDRESS, else a local Ray.")
@click.pass_context
def run(
    ctx: click.Context,
    config: Path,
    resources: tuple[str, ...],
    exclude: tuple[str, ...],
    target: str | None,
    resume: bool,
    full_refresh: bool,
    wait: bool,
    dry_run: bool,
    batch_size: int | None,
    progress: bool | None,
    log_format: str,
    log_file: Path | None,
    workers: int | None,
    engine: str | None,
    address: str | None,
) -> None:
    """Load every resource of CONFIG (default ./ingest.yml)."""
    from conduit import logs, runner
    from conduit.progress import RichReporter

    if dry_run:
        plans = _plan(config, resources, exclude, target, full_refresh, "table")
        click.echo(f"dry run: {plural(len(plans), 'resource')} planned, nothing loaded")
        sys.exit(1 if any(p.error for p in plans) else 0)
    bars = RichReporter() if progress is not False and log_format == "text" and sys.stderr.isatty() else None
    remove = logs.cli_handlers(log_format, log_file, ctx.obj["debug"], bars.console if bars else None)
    if remove is not None:  # invoked without main() (click's test runner): the handlers end with the command
        ctx.call_on_close(remove)
    result = runner.run(
        config, list(resources) or None, resume=resume, full_refresh=full_refresh, batch_size=batch_size, reporter=bars, wait=wait, exclude=list(exclude) or None, target=target, workers=workers, engine=engine, address=address
    )
    sys.exit(result.exit_code)


@cli.command()
@_config_arg
@_target_opt
def validate(config: Path, target: str | None) -> None:
    """Check CONFIG: keys, types, references, connections, and each resource's source and key columns."""
    from conduit import preview, runner
    from conduit.progress import Reporter
    from conduit.project import load_project

    project = load_project(config, target)
    runner.plan(project, project.config.resources)
    ctx = runner.Context(project, "validate", Reporter(), None, False, project.store)
    try:
        for src in project.config.sources:
            ctx.source(src.name).check()
            click.echo(f"source {src.name} ({src.type}): ok")
        for dst in project.config.destinations:
            ctx.destination(dst.name).check()
            click.echo(f"destination {dst.name} ({dst.type}): ok")
        preview.check(ctx)
    finally:
        ctx.close()
    click.echo(f"{project.path.name}: valid ({len(project.config.resources)} resources{f', target {project.target}' if project.target else ''})")


@cli.command()
@click.argument("sql")
@_config_opt
@_target_opt
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def query(sql: str, config: Path, target: str | None, fmt: str) -> None:
    """Run read-only SQL over the local store (runs, resource_runs, state, checkpoints, schema_versions, dlq)."""
    columns, rows = _store(config, target).query(sql)
    _render(columns, rows, fmt)


@cli.command()
@_config_opt
@_target_opt
@click.option("--all", "show_all", is_flag=True, help="Every run, not just the last 20.")
@click.option("--status", type=click.Choice(["running", "interrupted", "success", "partial_success", "failed"]), help="Only runs with this status.")
@click.option("--last", is_flag=True, help="Only the newest run, resource by resource.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def manifest(config: Path, target: str | None, show_all: bool, status: str | None, last: bool, fmt: str) -> None:
    """Show recorded runs (or, with --last, the newest run's resources)."""
    store = _store(config, target)
    where = f"WHERE status = '{status}'" if status else ""
    if last:
        sql = (
            "SELECT resource, status, rows_read, rows_written, rows_dlq, rows_warned, round(duration_s, 2) AS duration_s, "
            "round(rows_per_s) AS rows_per_s, table_name, error FROM resource_runs "
            "WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1) ORDER BY started_at"
        )
    else:
        limit = "" if show_all else "LIMIT 20"
        sql = (
            "SELECT r.run_id, r.status, r.started_at, round(epoch(r.finished_at - r.started_at), 2) AS duration_s, "
            "count(rr.resource) AS resources, sum(rr.rows_written) AS rows_written, sum(rr.rows_dlq) AS rows_dlq, r.error "
            f"FROM runs r LEFT JOIN resource_runs rr USING (run_id) {where.replace('status', 'r.status')} "
            f"GROUP BY ALL ORDER BY r.started_at DESC {limit}"
        )
    columns, rows = store.query(sql)
    _render(columns, rows, fmt)


@cli.group()
def state() -> None:
    """Show or reset incremental high-water marks."""


@state.command("show")
@_config_opt
@_target_opt
def state_show(config: Path, target: str | None) -> None:
    """Every resource's stored mark, per destination table."""
    columns, rows = _store(config, target).query("SELECT resource, incremental_column, value, value_type, updated_at, run_id, destination, db_schema, table_name FROM state ORDER BY resource, destination, db_schema, table_name")
    _render(columns, rows, "table")


@state.command("reset")
@click.argument("resource")
@_config_opt
@_target_opt
def state_reset(resource: str, config: Path, target: str | None) -> None:
    """Forget RESOURCE's mark: the next run loads everything again."""
    from conduit.errors import UsageError
    from conduit.project import load_project

    project = load_project(config, target)
    found = project.store.reset_state(resource)
    names = [r.name for r in project.config.resources]
    if not found and resource not in names:  # a resource dropped from the config may still have a mark to forget
        msg = f"unknown resource {resource!r} (resources: {', '.join(names) or 'none'})"
        raise UsageError(msg)
    click.echo(f"{resource}: state reset" if found else f"{resource}: no state stored")


@cli.group()
def schema() -> None:
    """Infer a resource's schema or compare it with the destination table."""


_schema_format = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


@schema.command("infer")
@click.argument("resource")
@_config_opt
@_target_opt
@_schema_format
def schema_infer(resource: str, config: Path, target: str | None, fmt: str) -> None:
    """The columns Conduit would load for RESOURCE, with the destination's SQL types."""
    from conduit import preview

    columns = preview.infer(config, resource, target)
    if fmt == "json":
        click.echo(json.dumps([{"column": n, "type": t} for n, t in columns], indent=2))
    for name, type_ in columns if fmt == "text" else []:
        click.echo(f"{name}: {type_}")


@schema.command("compare")
@click.argument("resource")
@_config_opt
@_target_opt
@_schema_format
def schema_compare(resource: str, config: Path, target: str | None, fmt: str) -> None:
    """New, missing and changed columns of RESOURCE against its destination table; exits 1 when they differ."""
    from conduit import preview

    found = preview.compare(config, resource, target)
    if fmt == "json":
        click.echo(json.dumps(found.as_json(), indent=2))
    else:
        click.echo("\n".join(found.lines()) or f"{resource}: no differences")
    sys.exit(0 if found.equal else 1)


@cli.command()
@_config_arg
@_target_opt
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def gc(config: Path, target: str | None, dry_run: bool) -> None:
    """Remove staging tables, ledger rows and dead-letter parts that no resumable run of CONFIG needs."""
    from conduit import gc as collector
    from conduit.project import load_project

    found = collector.collect(load_project(config, target), remove=not dry_run)
    for line in found:
        click.echo(("would remove " if dry_run else "removed ") + line)
    click.echo(f"{plural(len(found), 'leftover')} {'found' if dry_run else 'removed'}")


@cli.command("ls")
@_config_arg
@_select_opt
@_exclude_opt
def ls(config: Path, resources: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """List the resources of CONFIG that -r/--select and --exclude pick, one name a line; run nothing."""
    from conduit.project import load_project
    from conduit.selection import select

    for res in select(load_project(config), resources, exclude):
        click.echo(res.name)


@cli.command("plan")
@_config_arg
@_select_opt
@_exclude_opt
@_target_opt
@click.option("--full-refresh", is_flag=True, help="Plan as a run with --full-refresh would: no incremental mark.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def plan_command(config: Path, resources: tuple[str, ...], exclude: tuple[str, ...], target: str | None, full_refresh: bool, fmt: str) -> None:
    """Show what a run would do per resource (parts, rows, write mode, DDL, incremental window); load nothing.

    Exits 1 when a run would fail a resource (its error is shown), 2 on a config error.
    """
    plans = _plan(config, resources, exclude, target, full_refresh, fmt)
    sys.exit(1 if any(p.error for p in plans) else 0)


def _plan(config: Path, resources: tuple[str, ...], exclude: tuple[str, ...], target: str | None, full_refresh: bool, fmt: str) -> list[ResourcePlan]:
    """Validate, select, plan and print; the plans."""
    from conduit import plan, runner
    from conduit.project import load_project
    from conduit.selection import select

    project = load_project(config, target)
    selected = select(project, resources, exclude)
    runner.plan(project, selected)
    plans = plan.make(project, selected, full_refresh)
    if fmt == "json":
        doc = {"config": str(project.path), "target": project.target, "store": str(project.state_path), "resources": [p.as_dict() for p in plans]}
        click.echo(json.dumps(doc, default=str, indent=2))
        return plans
    click.echo(f"{project.path.name}" + (f", target {project.target}" if project.target else "") + f" (store {project.state_path})")
    _render(*plan.rows(plans), "table")
    for line in plan.ddl_lines(plans):
        click.echo(line)
    return plans


@cli.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option("--rows", default=10_000, show_default=True, help="Rows of sample data to generate.")
def init(directory: Path, rows: int) -> None:
    """Write a working example project (config + sample data) into DIRECTORY."""
    from conduit.example import write_example

    path = write_example(directory, rows)
    click.echo(f"wrote {path}; now run: conduit run {path}")


@cli.command("schema-json")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def schema_json(path: Path | None) -> None:
    """Write the JSON Schema of ingest.yml to PATH (a folder gets ingest.schema.json), or print it, for editors to validate and complete."""
    from conduit import json_schema

    if path is None:
        click.echo(json_schema.text(), nl=False)
    else:
        click.echo(f"wrote {json_schema.write(path)}")


@cli.command()
def connectors() -> None:
    """List built-in and plug-in connectors, with versions."""
    from conduit.connectors import BUILTINS, registry

    for name, where in sorted(registry.known().items()):
        origin = "built-in" if name in BUILTINS else "plug-in"
        try:
            c = registry.get(name)
            roles = "/".join(r for r, cls in (("source", c.source), ("destination", c.destination)) if cls)
            click.echo(f"{name:<12} {origin:<9} {roles:<20} {c.version or __version__}  {where}")
        except Exception as exc:  # noqa: BLE001 - show why a connector is unavailable
            click.echo(f"{name:<12} {origin:<9} unavailable: {exc}")


def _store(config: Path, target: str | None = None) -> Store:
    from conduit.project import load_project

    return load_project(config, target).store


def _render(columns: list[str], rows: list[tuple[object, ...]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=2))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, show_lines=False)
        for r in rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        Console(width=200).print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes, one readable line each (a JSON record with ``--log-format json``)."""
    from conduit import logs

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    _runtime.tune_process()  # environment defaults (bounded Polars read-ahead), as conduit.run() does
    with logs.cli_session():  # the log handlers a command installs end with it
        _exit_codes(argv, debug)


def _exit_codes(argv: list[str] | None, debug: bool) -> None:
    from conduit import _secrets
    from conduit.errors import ConduitError, one_line

    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        import itertools

        args = argv if argv is not None else sys.argv[1:]
        if "--log-format=json" in args or any(pair == ("--log-format", "json") for pair in itertools.pairwise(args)):
            from conduit import logs

            click.echo(logs.usage_error_json(f"error: {exc.format_message()}"), err=True)
        else:
            exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ConduitError as exc:
        _error(f"error: {_secrets.redact(one_line(exc))}", exc, debug)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - one line, traceback with --debug
        _error(f"error: {_secrets.redact(one_line(exc))} (run with --debug for the traceback)", exc, debug)
        sys.exit(1)


def _error(line: str, exc: BaseException, debug: bool) -> None:
    """The line that ends a command: through the command's log handlers when it has JSON ones, else on stderr (traceback first with ``--debug``)."""
    from conduit import _secrets, logs

    if logs.cli_error(line, exc, debug):
        return
    if debug:
        import traceback

        click.echo(_secrets.redact("".join(traceback.format_exception(exc))), err=True)
    click.echo(line, err=True)


def entry() -> NoReturn:
    """The console script and ``python -m conduit``: :func:`main`, then a quick exit.

    The interpreter's own teardown frees every module and the Arrow, Polars and DuckDB
    memory piece by piece, which takes a noticeable part of a short run, for nothing. Once the command returns, this waits for other threads, runs the
    exit handlers, flushes the output and leaves with ``os._exit``. An exception other
    than ``SystemExit`` takes the normal way out, with its traceback, and so does a run
    under a profiler or tracer (``python -m cProfile``, coverage), which reports at exit.

    The process is tuned first (:func:`conduit._runtime.tune_process`, as
    :func:`conduit.run` does), before NumPy can be imported.
    """
    _runtime.tune_process()
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    _exit_now(code or 0)


def _exit_now(code: int) -> NoReturn:
    import atexit
    import contextlib
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # the reader of a pipe went away (``conduit query | head``)
            stream.flush()
    os._exit(code)
