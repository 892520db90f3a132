"""API keys: only digests are stored, unknown keys map to no tenant, bad key files are named."""

import pytest

from pipeline.gateway.keys import ApiKeys, KeysError, digest, new_key


def test_keys_from_settings_and_file_map_to_tenants(tmp_path):
    path = tmp_path / "keys.jsonl"
    issued = new_key("beta", path)
    assert issued not in path.read_text()  # the key itself is never stored
    keys = ApiKeys.load(f"acme:{digest('secret-a')}", path)
    assert keys.tenant_for("secret-a") == "acme"
    assert keys.tenant_for(issued) == "beta"
    assert keys.tenant_for("guess") is None and keys.tenant_for(None) is None


def test_no_keys_means_an_open_gateway():
    keys = ApiKeys.load("", None)
    assert keys.open and keys.tenant_for(None) == "default"


def test_a_raw_key_or_a_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeysError, match="never keys"):
        ApiKeys.load("acme:not-a-digest", None)
    broken = tmp_path / "keys.jsonl"
    broken.write_text('{"tenant": "x"}\n')
    with pytest.raises(KeysError, match=r"keys\.jsonl:1"):
        ApiKeys.load("", broken)
    with pytest.raises(KeysError, match="does not exist"):
        ApiKeys.load("", tmp_path / "missing.jsonl")
