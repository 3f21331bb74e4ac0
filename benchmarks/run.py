"""Run the benchmark scenarios: ``python -m benchmarks.run --sf 1 [--sf 0.1] [--scenario NAME] [--repeat N]``.

For every scale factor and scenario, the baseline and the conduit command run
alternately ``--repeat`` times, each repetition in a fresh temporary folder. The
report (stdout, ``benchmarks/results/<timestamp>.md`` and ``.json``) gives median
wall time, the ratio to the baseline, rows/s, median CPU time and peak RSS. With two or more scale
factors (or ``--rss-scaling``, which means ``--sf 0.1 --sf 1``) it also compares peak
RSS between the smallest and the largest.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import pkgutil
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from benchmarks import scenarios as scenario_pkg
from benchmarks.harness import RESULTS, ROOT, Env, Measurement, Result, Scenario, ensure_data, lineitem_rows, measure, pg_uri, sf_name

MIB = 1024 * 1024


def discover(names: list[str] | None = None) -> list[Scenario]:
    """Every ``SCENARIOS`` of the modules in benchmarks/scenarios, filtered by name (substring)."""
    found: list[Scenario] = []
    for info in sorted(pkgutil.iter_modules(scenario_pkg.__path__), key=lambda i: i.name):
        try:
            module = importlib.import_module(f"{scenario_pkg.__name__}.{info.name}")
        except Exception as exc:  # noqa: BLE001 - a scenario module with a missing driver is skipped, loudly
            print(f"skipping benchmarks/scenarios/{info.name}.py: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        found += getattr(module, "SCENARIOS", [])
    if names:
        found = [s for s in found if any(n == s.name or n in s.name for n in names)]
    return found


def run_scenario(scenario: Scenario, sf: float, data: Path, repeat: int, keep: bool) -> Result:
    """``repeat`` alternating repetitions of baseline and command; verify after each command."""
    result = Result(scenario.name, scenario.baseline_name, sf)
    for rep in range(repeat):
        work = Path(tempfile.mkdtemp(prefix=f"conduit-bench-{scenario.name}-"))
        env = Env(sf=sf, data=data, work=work, pg_uri=pg_uri())
        try:
            scenario.prepare(env)
            order = [("baseline", scenario.baseline), ("command", scenario.command)]
            if rep % 2:
                order.reverse()
            for kind, argv_of in order:
                if scenario.settle is not None:
                    scenario.settle(env)
                m = measure(argv_of(env), work, work / f"{kind}.log", scenario.outside_rss if kind == "command" else None)
                getattr(result, kind).append(m)
                label = scenario.baseline_name if kind == "baseline" else "conduit"
                print(f"  sf{sf_name(sf)} {scenario.name} #{rep + 1} {label}: {m.wall_s:.2f}s, CPU {m.cpu_s:.2f}s, peak RSS {m.peak_rss / MIB:.0f} MiB", flush=True)
                if m.returncode != 0:
                    result.error = f"{label} exited {m.returncode}: {m.output.strip().splitlines()[-1] if m.output.strip() else ''}"
                    print(m.output, file=sys.stderr)
                    return result
                if kind == "command":
                    result.rows = scenario.verify(env)
                    result.expected = scenario.expected(env) if scenario.expected else lineitem_rows(env)
                    if result.rows != result.expected:
                        result.error = f"verify: {result.rows:,} rows, expected {result.expected:,}"
                        return result
        except Exception as exc:  # noqa: BLE001 - one failing scenario must not stop the others
            result.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            return result
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    return result


def _median(ms: list[Measurement], of: str = "wall_s") -> float:
    return statistics.median(getattr(m, of) for m in ms) if ms else float("nan")


def _peak(ms: list[Measurement]) -> int:
    return max((m.peak_rss for m in ms), default=0)


def summary(r: Result) -> dict:
    """The numbers of one result row."""
    cmd, base = _median(r.command), _median(r.baseline)
    return {
        "scenario": r.scenario,
        "sf": r.sf,
        "baseline": r.baseline_name,
        "rows": r.rows,
        "conduit_s": cmd,
        "baseline_s": base,
        "conduit_cpu_s": _median(r.command, "cpu_s"),
        "baseline_cpu_s": _median(r.baseline, "cpu_s"),
        "ratio": cmd / base if r.command and r.baseline else None,
        "rows_per_s": r.rows / cmd if r.rows and r.command else None,
        "conduit_peak_rss_mib": _peak(r.command) / MIB,
        "baseline_peak_rss_mib": _peak(r.baseline) / MIB,
        "ok": r.error is None,
        "error": r.error,
    }


def markdown(results: list[Result], argv: list[str], repeat: int) -> str:
    """The report as markdown tables."""
    lines = [
        f"# Conduit benchmarks {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        f"Command: `{' '.join(argv)}`; median of {repeat} alternating repetitions; CPU = the command's own user + system time (a database server's is not in it); peak RSS = max over repetitions of the whole process tree.",
        "",
        "| scenario | SF | rows | conduit s | baseline | baseline s | ratio | rows/s | conduit CPU s | baseline CPU s | conduit peak RSS MiB | baseline peak RSS MiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = summary(r)
        ratio = f"{s['ratio']:.2f}x" if s["ratio"] else "-"
        rate = f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else "-"
        rows = f"{s['rows']:,}" if s["rows"] is not None else "-"
        status = "ok" if s["ok"] else f"FAILED: {s['error']}"
        cpu = f"{s['conduit_cpu_s']:.2f} | {s['baseline_cpu_s']:.2f}"
        rss = f"{s['conduit_peak_rss_mib']:.0f} | {s['baseline_peak_rss_mib']:.0f}"
        lines.append(f"| {r.scenario} | {sf_name(r.sf)} | {rows} | {s['conduit_s']:.2f} | {r.baseline_name} | {s['baseline_s']:.2f} | {ratio} | {rate} | {cpu} | {rss} | {status} |")
    scaling = rss_scaling(results)
    if scaling:
        lo, hi = scaling[0]["sf_small"], scaling[0]["sf_large"]
        lines += ["", f"Peak RSS scaling, SF{sf_name(hi)} vs SF{sf_name(lo)} (target: < 2x):", "", f"| scenario | SF{sf_name(lo)} MiB | SF{sf_name(hi)} MiB | growth |", "|---|---|---|---|"]
        for s in scaling:
            lines.append(f"| {s['scenario']} | {s['small_mib']:.0f} | {s['large_mib']:.0f} | {s['growth']:.2f}x |")
    return "\n".join(lines) + "\n"


def rss_scaling(results: list[Result]) -> list[dict]:
    """Conduit peak RSS at the largest vs the smallest scale factor, per scenario."""
    sfs = sorted({r.sf for r in results})
    if len(sfs) < 2:
        return []
    by = {(r.scenario, r.sf): r for r in results if r.command}
    out = []
    for (name, sf), small in sorted(by.items()):
        large = by.get((name, sfs[-1]))
        if sf != sfs[0] or large is None:
            continue
        a, b = _peak(small.command), _peak(large.command)
        out.append({"scenario": name, "sf_small": sfs[0], "sf_large": sfs[-1], "small_mib": a / MIB, "large_mib": b / MIB, "growth": b / a if a else None})
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 1 when any scenario failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sf", type=float, action="append", help="TPC-H scale factor (repeatable; default 1)")
    parser.add_argument("--scenario", action="append", help="run only scenarios whose name contains this (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each command and baseline (default 3)")
    parser.add_argument("--rss-scaling", action="store_true", help="run at SF0.1 and SF1 and compare conduit's peak RSS")
    parser.add_argument("--keep", action="store_true", help="keep each repetition's work folder (for debugging)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    chosen = discover(args.scenario)
    if args.list:
        for s in chosen:
            print(f"{s.name} (baseline: {s.baseline_name})")
        return 0
    if not chosen:
        print("no scenario matches", file=sys.stderr)
        return 2
    sfs = sorted(set(args.sf or []) | ({0.1, 1.0} if args.rss_scaling else set())) or [1.0]
    compileall.compile_dir(ROOT / "conduit", quiet=1)  # bytecode, as an installed package has it (pip compiles at install): else, under PYTHONDONTWRITEBYTECODE, every start compiles every module (~50 ms)
    results: list[Result] = []
    for sf in sfs:
        data = ensure_data(sf)
        for scenario in chosen:
            results.append(run_scenario(scenario, sf, data, args.repeat, args.keep))
    text = markdown(results, ["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])], args.repeat)
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"{stamp}.md").write_text(text)
    raw = {"argv": sys.argv[1:] if argv is None else argv, "repeat": args.repeat, "summary": [summary(r) for r in results], "rss_scaling": rss_scaling(results)}
    raw["raw"] = [asdict(r) for r in results]
    for r in raw["raw"]:
        for m in r["command"] + r["baseline"]:
            m.pop("output", None)
    (RESULTS / f"{stamp}.json").write_text(json.dumps(raw, indent=2))
    print(f"written: {RESULTS / stamp}.md and .json")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
