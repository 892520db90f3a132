"""Who may read the analytics over HTTP (``GET /queries/{name}`` on the analytics stage's port).

Every query needs ``Authorization: Bearer <token>``:

- the operator token (``WRP_ANALYTICS_TOKEN``) reads every query for every tenant. When it is not
  set, the analytics stage makes one for its run and leaves it where only its user can read it,
  ``<state-dir>/run/analytics.token``, removed when the stage stops; ``wrp analytics`` and
  ``wrp report`` on the same host read it from there;
- a tenant's gateway API key reads only the per-tenant queries (and ``request``), always for its
  own tenant, whatever ``tenant`` it asks for.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.api_keys import ApiKeys
from pipeline.settings import Settings


@dataclass(frozen=True)
class Reader:
    """A caller allowed to read: ``tenant`` None reads every tenant."""

    tenant: str | None


def token_path(settings: Settings) -> Path:
    return settings.state_dir / "run" / "analytics.token"


class Readers:
    """Maps a bearer token to a :class:`Reader`, or to nobody."""

    def __init__(self, operator_token: str, keys: ApiKeys) -> None:
        self._operator = operator_token
        self._keys = keys

    def reader(self, authorization: str | None) -> Reader | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if hmac.compare_digest(token.encode(), self._operator.encode()):
            return Reader(tenant=None)
        tenant = None if self._keys.open else self._keys.tenant_for(token)
        return Reader(tenant=tenant) if tenant is not None else None


def issue_operator_token(settings: Settings) -> str:
    """WRP_ANALYTICS_TOKEN, or a token made for this run and written to :func:`token_path`
    (mode 0600)."""
    if settings.analytics_token:
        return settings.analytics_token
    token = secrets.token_urlsafe(32)
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(token)
    return token


def withdraw_operator_token(settings: Settings) -> None:
    """Remove the run's token file (nothing to do when WRP_ANALYTICS_TOKEN is set)."""
    if not settings.analytics_token:
        token_path(settings).unlink(missing_ok=True)


def operator_token(settings: Settings) -> str | None:
    """The token a local CLI presents: WRP_ANALYTICS_TOKEN, else the running stage's file."""
    if settings.analytics_token:
        return settings.analytics_token
    try:
        return token_path(settings).read_text().strip() or None
    except OSError:
        return None
