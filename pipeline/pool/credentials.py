"""The headers a pool endpoint is called with, resolved from what its ``auth`` names.

A policy names where a secret is (an environment variable, a mounted file), never the secret.
:func:`resolve_headers` reads them; a secret that is not there is reported by *name* (the
variable or the file), so it can be logged and shown by `wrp policy check` without leaking
anything. Resolved headers live only in dispatch's memory: never on an envelope, an outcome, a
log line or a repr.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.policy import Policy, PoolAuth


@dataclass(frozen=True)
class Credentials:
    """An endpoint's resolved headers, or the names of the secrets that are missing."""

    headers: dict[str, str] = field(default_factory=dict, repr=False)
    missing: tuple[str, ...] = ()


def _usable(value: str, where: str, missing: list[str]) -> str | None:
    """``value`` stripped, or None (and ``where`` noted) when empty or not a header value: a
    client library refusing it would quote it in its error."""
    value = value.strip()
    if not value:
        missing.append(f"{where} (empty or unset)")
        return None
    if not value.isprintable():
        missing.append(f"{where} (holds a line break or control character)")
        return None
    if not value.isascii():  # an HTTP client refusing it would quote the whole header
        missing.append(f"{where} (holds a non-ASCII character)")
        return None
    return value


def _env(name: str, environ: Mapping[str, str], missing: list[str]) -> str | None:
    return _usable(environ.get(name, ""), f"environment variable {name}", missing)


def _file(path: str, missing: list[str]) -> str | None:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not text"
        missing.append(f"secret file {path} ({reason})")
        return None
    return _usable(text, f"secret file {path}", missing)


def resolve_headers(auth: PoolAuth | None, environ: Mapping[str, str] | None = None) -> Credentials:
    """The headers ``auth`` asks for, read from ``environ`` (default: the process's) and files."""
    if auth is None:
        return Credentials()
    environ = os.environ if environ is None else environ
    missing: list[str] = []
    headers: dict[str, str] = {}
    key = None
    if auth.api_key_env:
        key = _env(auth.api_key_env, environ, missing)
    elif auth.api_key_file:
        key = _file(auth.api_key_file, missing)
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    for header, name in auth.headers_env.items():
        value = _env(name, environ, missing)
        if value is not None:
            headers[header] = value
    return Credentials(headers, tuple(missing))


def missing_secrets(
    policy: Policy, environ: Mapping[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """``(dotted path of the auth in force, missing secret's name)`` for every endpoint whose
    credentials cannot be read (once per auth section)."""
    seen: set[tuple[str, str]] = set()
    for i, pool in enumerate(policy.pools):
        for j, endpoint in enumerate(pool.endpoints):
            auth = pool.endpoint_auth(endpoint)
            path = f"pools[{i}].endpoints[{j}].auth" if endpoint.auth else f"pools[{i}].auth"
            for name in resolve_headers(auth, environ).missing:
                if (path, name) not in seen:
                    seen.add((path, name))
                    yield path, name
