"""The fingerprint cache: hits, expiry at the earliest notAfter, and CRL reloads."""

from __future__ import annotations

import os
import shutil

from cryptography.hazmat.primitives import serialization

from b2cal_assets.auth.authenticator import Authenticator
from b2cal_assets.auth.cache import ValidationCache, chain_fingerprint
from b2cal_assets.auth.pki import make_crl

from .conftest import LOCAL_HOST


def test_entry_is_served_until_it_expires():
    cache: ValidationCache[str] = ValidationCache()
    cache.put(b"k", "result", expires_at=100.0, generation=0)
    assert cache.get(b"k", generation=0, now=99.0) == "result"
    assert cache.get(b"k", generation=0, now=100.0) is None
    assert len(cache) == 0


def test_new_generation_empties_the_cache():
    cache: ValidationCache[str] = ValidationCache()
    cache.put(b"k", "result", expires_at=100.0, generation=0)
    assert cache.get(b"k", generation=1, now=1.0) is None
    assert len(cache) == 0


def test_oldest_entries_are_evicted_beyond_the_bound():
    cache: ValidationCache[int] = ValidationCache(max_entries=2)
    for number in range(3):
        cache.put(bytes([number]), number, expires_at=100.0, generation=0)
    assert cache.get(b"\x00", 0, now=1.0) is None and cache.get(b"\x02", 0, now=1.0) == 2


def test_fingerprint_separates_certificate_boundaries():
    assert chain_fingerprint([b"ab", b"c"]) != chain_fingerprint([b"a", b"bc"])


def test_authenticator_serves_a_repeat_chain_from_the_cache_until_the_earliest_not_after(test_pki, authenticator):
    data = test_pki.proxy("voms-one").read_bytes()
    first = authenticator.authenticate(data)
    assert authenticator.authenticate(data) is first
    entry = authenticator.cache._entries[chain_fingerprint(data)]
    earliest = min(first.chain.not_after, *(item.not_after for item in first.attributes))
    assert entry.expires_at == earliest.timestamp()


def test_a_fingerprint_the_caller_already_has_is_the_cache_key(test_pki, authenticator):
    data = test_pki.proxy("voms-one").read_bytes()
    first = authenticator.authenticate(data, fingerprint=chain_fingerprint(data))
    assert set(authenticator.cache._entries) == {chain_fingerprint(data)}
    assert authenticator.authenticate(data) is first  # the same entry, found by the computed key


def test_refusals_are_not_cached(test_pki, authenticator):
    data = test_pki.proxy("untrusted", user="eve", voms=False).read_bytes()
    assert not authenticator.authenticate(data).authenticated
    assert len(authenticator.cache) == 0


def test_crl_reload_drops_cached_decisions(test_pki, tmp_path):
    ca_dir = tmp_path / "certificates"
    shutil.copytree(test_pki.pki.ca_dir, ca_dir)
    authenticator = Authenticator(ca_dir, test_pki.pki.vomsdir, host=LOCAL_HOST)
    data = test_pki.proxy("voms-one").read_bytes()
    assert authenticator.authenticate(data).authenticated
    alice = test_pki.pki.users["alice"].certificate
    crl_file = next(ca_dir.glob("*.r0"))
    crl_file.write_bytes(make_crl(test_pki.pki.ca.credential, [alice.serial_number]).public_bytes(serialization.Encoding.PEM))
    os.utime(crl_file, ns=(1, 1))
    assert authenticator.reload() is True
    result = authenticator.authenticate(data)
    assert not result.authenticated and "revoked" in str(result.errors[0])
