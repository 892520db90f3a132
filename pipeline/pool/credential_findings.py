"""What `wrp policy check` says about the credentials a pool's ``auth`` names
(:mod:`pipeline.pool.credentials`)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import ParseResult, urlparse

import yaml

from pipeline.policy import Policy
from pipeline.policy.check import Finding, locate
from pipeline.pool.credentials import missing_secrets


def credential_findings(policy: Policy, root: yaml.Node) -> Iterator[Finding]:
    """Secrets a pool's auth names that this environment lacks (by name: the values are never
    read into a finding), and credentials that would cross the network in clear text."""
    for path, name in missing_secrets(policy):
        yield Finding(
            "error",
            locate(root, path),
            f"{path}: missing secret: {name}; set it where dispatch runs (its calls to the pool "
            "fail with pool_misconfigured until it is)",
        )
    for i, pool in enumerate(policy.pools):
        for j, endpoint in enumerate(pool.endpoints):
            url = urlparse(endpoint.url)
            if pool.endpoint_auth(endpoint) and url.scheme == "http" and not _loopback(url):
                yield Finding(
                    "warning",
                    locate(root, f"pools[{i}].endpoints[{j}].url"),
                    f"pool {pool.name!r} sends credentials to {endpoint.url} over plain http: "
                    "anyone on the path can read them; use https",
                )


def _loopback(url: ParseResult) -> bool:
    return url.hostname in ("localhost", "127.0.0.1", "::1")
