"""API keys -> tenants. Only SHA-256 digests of keys are stored (settings or a JSON-lines file);
with no keys configured the gateway is open and every caller is tenant ``default``."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

KEY_PREFIX = "wrp-"


class KeysError(ValueError):
    pass


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, digests: dict[str, str]) -> None:
        self.tenants = digests  # sha256 hex -> tenant

    @property
    def open(self) -> bool:
        return not self.tenants

    def tenant_for(self, key: str | None) -> str | None:
        """The key's tenant; None for a missing or unknown key (``default`` when open)."""
        if self.open:
            return "default"
        if not key:
            return None
        wanted = digest(key)
        for stored, tenant in self.tenants.items():
            if hmac.compare_digest(stored, wanted):
                return tenant
        return None

    @classmethod
    def load(cls, pairs: str, path: Path | None) -> ApiKeys:
        """From ``tenant:sha256,...`` and a JSON-lines file of ``{"tenant", "sha256"}``."""
        digests: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            tenant, _, hashed = pair.partition(":")
            digests[_checked(hashed, f"WRP_API_KEYS entry {pair!r}")] = tenant
        if path is not None:
            if not path.is_file():
                raise KeysError(f"API keys file {path} does not exist (WRP_API_KEYS_FILE)")
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    digests[_checked(entry["sha256"], f"{path}:{number}")] = str(entry["tenant"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise KeysError(
                        f'{path}:{number}: expected {{"tenant": ..., "sha256": ...}} ({exc})'
                    ) from None
        return cls(digests)


def _checked(hashed: str, where: str) -> str:
    if len(hashed) != 64 or any(c not in "0123456789abcdef" for c in hashed):
        raise KeysError(f"{where}: not a SHA-256 hex digest; store digests, never keys")
    return hashed


def new_key(tenant: str, path: Path) -> str:
    """Create a key for ``tenant``, append its digest to ``path``, return the key (shown once)."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as sink:
        sink.write(json.dumps({"tenant": tenant, "sha256": digest(key)}) + "\n")
    return key
