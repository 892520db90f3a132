"""API keys: only digests are stored, unknown keys map to no tenant, the default key file is
honoured, serving without keys needs an explicit setting, and the file is followed as it
changes."""

import os

import pytest

from pipeline import api_keys as keys_module
from pipeline.api_keys import ApiKeys, KeysError, digest, first_key, new_key
from pipeline.settings import Settings


def test_keys_from_settings_and_file_map_to_tenants(tmp_path):
    path = tmp_path / "keys.jsonl"
    issued = new_key("beta", path)
    assert issued not in path.read_text()  # the key itself is never stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    keys = ApiKeys(f"acme:{digest('secret-a')}", path)
    assert keys.tenant_for("secret-a") == "acme"
    assert keys.tenant_for(issued) == "beta"
    assert keys.tenant_for("guess") is None and keys.tenant_for(None) is None


def test_a_key_in_the_default_file_locks_the_gateway(tmp_path):
    settings = Settings(state_dir=tmp_path)
    issued = new_key("alpha", settings.api_keys_path)  # what `wrp gateway key alpha` does
    keys = ApiKeys.from_settings(settings)
    keys.require()
    assert not keys.open
    assert keys.tenant_for(issued) == "alpha" and keys.tenant_for("wrong") is None


def test_without_keys_the_gateway_refuses_to_start_unless_told_to_serve_openly(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(keys_module, "RECHECK_S", 0.0)
    with pytest.raises(KeysError, match="WRP_GATEWAY_OPEN"):
        ApiKeys.from_settings(Settings(state_dir=tmp_path)).require()
    open_keys = ApiKeys.from_settings(Settings(state_dir=tmp_path, gateway_open=True))
    open_keys.require()
    assert open_keys.open and open_keys.tenant_for(None) == "default"
    # once a key exists, the open setting no longer opens anything
    new_key("alpha", tmp_path / "api_keys.jsonl")
    assert open_keys.tenant_for(None) is None and not open_keys.open


def test_a_new_stack_gets_a_first_key_instead_of_an_open_gateway(tmp_path):
    settings = Settings(state_dir=tmp_path)
    key = first_key(settings)
    assert key and ApiKeys.from_settings(settings).tenant_for(key) == "default"
    assert first_key(settings) is None  # a key exists now: none is added
    assert first_key(Settings(state_dir=tmp_path / "open", gateway_open=True)) is None


def test_keys_added_or_removed_in_the_file_take_effect_without_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(keys_module, "RECHECK_S", 0.0)
    path = tmp_path / "keys.jsonl"
    first = new_key("alpha", path)
    keys = ApiKeys("", path)
    second = new_key("beta", path)
    assert keys.tenant_for(second) == "beta"
    path.write_text(path.read_text().splitlines()[1] + "\n")  # alpha's key revoked
    os.utime(path, ns=(1, 1))
    assert keys.tenant_for(first) is None and keys.tenant_for(second) == "beta"


def test_a_raw_key_or_a_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeysError, match="never keys"):
        ApiKeys("acme:not-a-digest")
    with pytest.raises(KeysError, match="tenant"):
        ApiKeys(f"acme corp:{digest('x')}")
    broken = tmp_path / "keys.jsonl"
    broken.write_text('{"tenant": "x"}\n')
    with pytest.raises(KeysError, match=r"keys\.jsonl:1"):
        ApiKeys("", broken)
    missing = Settings(state_dir=tmp_path, api_keys_file=tmp_path / "missing.jsonl")
    with pytest.raises(KeysError, match="does not exist"):
        ApiKeys.from_settings(missing)
