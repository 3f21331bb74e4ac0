"""YAML loading that remembers where every key and item came from.

:func:`load` returns plain Python data plus a map from key path to line number, so
config errors can say ``ingest.yml:14``. Values stay as YAML scalars produce them
(strings, ints, floats, bools, None).

Examples
--------
>>> data, lines = load("a:\\n  b: [1, 2]\\n")
>>> data, lines[("a", "b")], lines[("a", "b", 1)]
({'a': {'b': [1, 2]}}, 2, 2)
"""

from __future__ import annotations

import yaml

Path_ = tuple[str | int, ...]
ALIAS_BUDGET = 10_000
"""Nodes a document may build again through aliases (a YAML "billion laughs" bomb builds billions)."""


def load(text: str) -> tuple[object, dict[Path_, int]]:
    """Parse ``text``; return the data and a ``{key path: 1-based line}`` map.

    Raises :class:`yaml.YAMLError` when aliases would rebuild more than
    :data:`ALIAS_BUDGET` nodes, before building them.
    """
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    _check_aliases(node)
    return _build(node, (), lines), lines


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand beyond the budget (sizes counted per node, once)."""
    sizes: dict[int, int] = {}
    seen: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a recursive alias counts once here; composing it fails anyway
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for child in children:
            n = size(child)
            if id(child) in seen:
                repeated[0] += n
                if repeated[0] > ALIAS_BUDGET:
                    line = child.start_mark.line + 1
                    msg = f"aliases expand to more than {ALIAS_BUDGET:,} nodes (an alias bomb?) at line {line}"
                    raise yaml.YAMLError(msg)
            seen.add(id(child))
            total += n
        sizes[key] = total
        return total

    repeated = [0]
    size(root)


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> object:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                msg = f"duplicate key {key!r}"
                raise yaml.YAMLError(f"{msg} at line {key_node.start_mark.line + 1}")
            out[key] = _build(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
