"""``conduit gc``: remove what no resumable run needs.

A failed resource aborts its load (staging dropped); a killed or interrupted run keeps
its staged chunks for resume. What stays behind after that run is superseded (a new
run after a config change drops only the resources still in the config) or otherwise
finished is found here: ``_conduit_stage_*`` tables and ``_conduit_chunks`` rows of the
store's finished runs in every destination of the config, and the dead-letter parts
(``<dlq>/<run>/_parts``) of those runs. Runs left ``running`` or ``interrupted``, and
runs whose lease is alive, are kept.
"""

from __future__ import annotations

import shutil

from conduit._text import plural
from conduit.leases import live_holders
from conduit.progress import Reporter
from conduit.project import Project
from conduit.runner import Context


def collect(project: Project, remove: bool) -> list[str]:
    """What no resumable run needs, one line each (``destination: object``); removed when ``remove``."""
    store = project.store
    if not store.path.exists():
        return []
    _, rows = store.query("SELECT run_id, status FROM runs")
    keep = {h.run_id for h in live_holders(store)} | {str(r) for r, s in rows if s in ("running", "interrupted")}
    finished = {str(r) for r, _ in rows} - keep
    found: list[str] = []
    ctx = Context(project, "gc", Reporter(), None, False, store)
    try:
        for cfg in project.config.destinations:
            found += [f"{cfg.name}: {what}" for what in ctx.destination(cfg.name).leftovers(finished, remove)]
    finally:
        ctx.close()
    for parts in sorted(store.dlq_dir.glob("*/_parts")):
        if parts.parent.name in finished:
            found.append(f"dead letters: {plural(len(list(parts.iterdir())), 'part file')} of run {parts.parent.name} in {parts}")
            if remove:
                shutil.rmtree(parts)
    return found
