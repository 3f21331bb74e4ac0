"""Keep secrets out of everything Conduit prints or stores.

Two layers: :func:`redact` masks the password part of connection strings and
``password=...`` style parameters wherever they appear, and :func:`register` remembers
secret values seen in a config (passwords, tokens) so :func:`redact` scrubs them even
when a driver echoes them in an unexpected shape.

Examples
--------
>>> redact("postgresql://app:s3cret@db:5432/prod")
'postgresql://app:***@db:5432/prod'
>>> redact("host=db password=hunter2 user=x")
'host=db password=*** user=x'
>>> register("tok-123"); redact("error: bad token tok-123")
'error: bad token ***'
"""

from __future__ import annotations

import re

_KNOWN: set[str] = set()
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?=@)")
_DSN_PASSWORD = re.compile(r"(?P<head>^|[\s'\"(])(?P<user>[^:/@\s'\"]+):(?P<pw>[^@/\s'\"]+)(?=@[^\s]+/)")
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|private_key_passphrase|aws_secret_access_key)"
    r"\s*[=:]\s*)(?P<q>['\"]?)(?P<pw>[^'\"\s&;,}]+)",
    re.IGNORECASE,
)


def register(value: object) -> None:
    """Remember ``value`` as a secret to scrub from any later :func:`redact` call."""
    if isinstance(value, str) and len(value) >= 3:
        _KNOWN.add(value)


def redact(text: str) -> str:
    """Return ``text`` with passwords in URIs, DSNs, key=value pairs and known secrets masked."""
    text = _URI_PASSWORD.sub(lambda m: m["head"] + "***", text)
    text = _DSN_PASSWORD.sub(lambda m: f"{m['head']}{m['user']}:***", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['key']}{m['q']}***", text)
    for secret in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def uri_password(uri: str) -> str | None:
    """The password embedded in a ``scheme://user:password@host`` string, if any."""
    m = _URI_PASSWORD.search(uri) or _DSN_PASSWORD.search(uri)
    return m["pw"] if m else None
