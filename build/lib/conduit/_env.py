"""``${VAR}`` / ``${VAR:-default}`` expansion and ``.env`` loading for ingest.yml.

Examples
--------
>>> expand("${HOME_X:-/tmp}/data", {})
'/tmp/data'
>>> expand("$${NOT_A_VAR}", {})
'${NOT_A_VAR}'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(KeyError):
    """A ``${VAR}`` with no value and no default; ``args[0]`` is the name."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in ``text``; ``$${...}`` escapes."""

    def sub(m: re.Match[str]) -> str:
        escaped, name, default = m.groups()
        if escaped:
            return m.group(0)[1:]
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        if name in env:
            return ""
        raise UnsetVariable(name)

    return _VAR.sub(sub, text)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, optional ``export``, quotes, ``#`` comments."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out
