"""Which resources a command works on: ``-r``/``--select`` and ``--exclude``.

A selector is a resource name, a glob over names (``orders_*``, ``*_eu``, ``raw_?``) or
``tag:NAME`` (``NAME`` may be a glob too) matching the resource's ``tags:``. Several
``-r`` select the union; ``--exclude`` (same syntax) removes from it. The result keeps
the config's order. A selector that matches nothing is a usage error naming the known
resources and tags, so a typo never runs nothing quietly.

Examples
--------
>>> from conduit.config import ResourceConfig
>>> rs = [ResourceConfig(name=n, source="s", destination="d", tags=t) for n, t in [("orders_eu", ["daily"]), ("orders_us", []), ("users", ["daily"])]]
>>> [r.name for r in matching(rs, ["orders_*"], None)]
['orders_eu', 'orders_us']
>>> [r.name for r in matching(rs, ["tag:daily"], ["users"])]
['orders_eu']
>>> matching(rs, ["user"], None)
Traceback (most recent call last):
conduit.errors.UsageError: -r user matches no resource (did you mean 'users'?); resources: orders_eu, orders_us, users; tags: daily
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from conduit.config import ResourceConfig, suggest
from conduit.errors import UsageError

if TYPE_CHECKING:
    from conduit.project import Project

TAG = "tag:"


def select(project: Project, include: Sequence[str] | None, exclude: Sequence[str] | None = None) -> list[ResourceConfig]:
    """The resources of ``project`` that ``include`` (all when empty) selects and ``exclude`` does not, in config order."""
    return matching(project.config.resources, include, exclude)


def matching(resources: list[ResourceConfig], include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[ResourceConfig]:
    """:func:`select` over a list of resources; raises :class:`~conduit.errors.UsageError` for a selector matching nothing."""
    chosen = _union(resources, include, "-r") if include else list(resources)
    dropped = _union(resources, exclude, "--exclude") if exclude else []
    out = [r for r in chosen if r not in dropped]
    if not out:
        what = f"every resource -r selected ({', '.join(r.name for r in chosen)})" if include else "every resource"
        msg = f"nothing left to run: --exclude removed {what}"
        raise UsageError(msg)
    return out


def matches(resource: ResourceConfig, selector: str) -> bool:
    """Whether one selector (name, glob or ``tag:NAME``) matches ``resource``."""
    if selector.startswith(TAG):
        pattern = selector[len(TAG) :]
        return bool(pattern) and any(fnmatchcase(tag, pattern) for tag in resource.tags)
    return fnmatchcase(resource.name, selector)


def _union(resources: list[ResourceConfig], selectors: Sequence[str], option: str) -> list[ResourceConfig]:
    picked: set[str] = set()
    for selector in selectors:
        found = {r.name for r in resources if matches(r, selector)}
        if not found:
            raise UsageError(_nothing(resources, selector, option))
        picked |= found
    return [r for r in resources if r.name in picked]


def _nothing(resources: list[ResourceConfig], selector: str, option: str) -> str:
    names = [r.name for r in resources]
    tags = sorted({t for r in resources for t in r.tags})
    if selector.startswith(TAG):
        return f"{option} {selector} matches no resource{suggest(selector[len(TAG) :], tags)}; tags: {', '.join(tags) or 'none'}"
    return f"{option} {selector} matches no resource{suggest(selector, names)}; resources: {', '.join(names) or 'none'}; tags: {', '.join(tags) or 'none'}"
