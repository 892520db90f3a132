"""API keys -> tenants. Only SHA-256 digests of keys are stored: in ``WRP_API_KEYS``
(``tenant:sha256,...``) and in the key file (JSON lines of ``{"tenant", "sha256"}``, default
``<state-dir>/api_keys.jsonl``, where ``wrp gateway key TENANT`` appends).

With any key configured every caller must present one. Serving without keys (every caller is
tenant ``default``) needs ``WRP_GATEWAY_OPEN=true``; without keys and without it the gateway
refuses to start. The key file is read again when it changes (checked at most once a second), so
a key added or removed there takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path

from pipeline.envelope import TENANT
from pipeline.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "wrp-"
#: Seconds between looks at the key file's modification time.
RECHECK_S = 1.0


class KeysError(ValueError):
    pass


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    """A key's id where usage is counted and shown: a prefix of its digest, never the key."""
    return digest(key)[:12]


class ApiKeys:
    """Digest -> tenant, from settings and a key file that is followed as it changes."""

    def __init__(self, pairs: str = "", path: Path | None = None, allow_open: bool = False) -> None:
        self.fixed = _parse_pairs(pairs)
        self.path = path
        self.allow_open = allow_open
        self._from_file: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._reload()

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """WRP_API_KEYS and the key file; a file named by WRP_API_KEYS_FILE must exist, the
        default one may not exist yet."""
        path = settings.api_keys_path
        if settings.api_keys_file is not None and not path.is_file():
            raise KeysError(f"API keys file {path} does not exist (WRP_API_KEYS_FILE)")
        return cls(settings.api_keys, path, settings.gateway_open)

    def require(self) -> None:
        """Raise unless the gateway may serve: some key exists, or WRP_GATEWAY_OPEN is set."""
        if not self.tenants and not self.allow_open:
            raise KeysError(
                f"no API keys configured: create one with `wrp gateway key TENANT` (its digest "
                f"goes to {self.path}), or set WRP_GATEWAY_OPEN=true to serve every caller as "
                "tenant 'default'"
            )

    @property
    def tenants(self) -> dict[str, str]:
        """Every configured digest and its tenant."""
        return {**self._from_file, **self.fixed}

    @property
    def open(self) -> bool:
        """Serving without keys: none configured and WRP_GATEWAY_OPEN set."""
        return self.allow_open and not self.tenants

    def tenant_for(self, key: str | None) -> str | None:
        """The key's tenant; None for a missing or unknown key (``default`` when open)."""
        if time.monotonic() - self._checked >= RECHECK_S:
            self._reload()
        if self.open:
            return "default"
        if not key:
            return None
        wanted = digest(key)
        found = None
        for stored, tenant in self.tenants.items():
            if hmac.compare_digest(stored, wanted):
                found = tenant
        return found

    def _reload(self) -> None:
        self._checked = time.monotonic()
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._from_file, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._from_file = _parse_file(self.path)
        except KeysError as exc:
            if self._stamp is None:
                raise
            log.error("API keys: %s; the keys read before stay in force", exc)
            return
        self._stamp = stamp


def _parse_pairs(pairs: str) -> dict[str, str]:
    digests: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in pairs.split(","))):
        tenant, _, hashed = pair.partition(":")
        where = f"WRP_API_KEYS entry {pair!r}"
        digests[_checked(hashed, where)] = _tenant(tenant, where)
    return digests


def _parse_file(path: Path) -> dict[str, str]:
    digests: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
            digests[_checked(entry["sha256"], where)] = _tenant(str(entry["tenant"]), where)
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, KeysError):
                raise
            raise KeysError(f'{where}: expected {{"tenant": ..., "sha256": ...}} ({exc})') from None
    return digests


def _checked(hashed: str, where: str) -> str:
    if len(hashed) != 64 or any(c not in "0123456789abcdef" for c in hashed):
        raise KeysError(f"{where}: not a SHA-256 hex digest; store digests, never keys")
    return hashed


def _tenant(name: str, where: str) -> str:
    if not re.match(TENANT, name):
        raise KeysError(
            f"{where}: tenant {name!r} must be 1-64 letters, digits or . _ : @ - "
            "(starting with a letter or digit)"
        )
    return name


def first_key(settings: Settings) -> str | None:
    """A key for tenant ``default`` when no key is configured and the gateway is not open by
    choice, so a new embedded stack never serves openly by accident; None otherwise."""
    keys = ApiKeys.from_settings(settings)
    if keys.tenants or settings.gateway_open:
        return None
    return new_key("default", settings.api_keys_path)


def new_key(tenant: str, path: Path) -> str:
    """Create a key for ``tenant``, append its digest to ``path`` (only the owner may read it),
    return the key (shown once)."""
    _tenant(tenant, "tenant")
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as sink:
        sink.write(json.dumps({"tenant": tenant, "sha256": digest(key)}) + "\n")
    return key
