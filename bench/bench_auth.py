"""Benchmark: full validation of a VOMS proxy chain, uncached and cached.

Run from the repository root: ``.venv/bin/python bench/bench_auth.py``. Builds a throw-away
PKI and a voms-proxy-fake proxy in a temporary directory, then times

* baseline: the bare signature verifications of the same chain (proxy by EEC, EEC by CA,
  AC by AA), i.e. the cryptographic floor any validator pays;
* uncached: Authenticator.authenticate with the cache disabled (chain, CRLs, AA chain, AC);
* cached: the same call answered from the fingerprint cache.

Times are medians over repeated runs; ratios are to the baseline measured in this run.
Goals: uncached < 5 ms, cached < 50 us.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import padding

from b2cal_assets.auth.authenticator import Authenticator
from b2cal_assets.auth.chain import parse_chain
from b2cal_assets.auth.pki import build_test_pki, voms_proxy_fake
from b2cal_assets.auth.voms import SIGNATURE_HASHES, ac_extension_of, decode_ac_extension

HOST = "b2cal.test"
GOAL_UNCACHED_S = 5e-3
GOAL_CACHED_S = 50e-6


def median_seconds(function: Callable[[], object], *, repeat: int, number: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as workdir:
        pki = build_test_pki(Path(workdir) / "pki")
        alice = pki.users["alice"]
        proxy_file = voms_proxy_fake(
            cert=alice.cert_path, key=alice.key_path, out=Path(workdir) / "x509up", ca_dir=pki.ca_dir, aa=pki.aa,
            vo=pki.vo, uri=pki.voms_uri, fqans=["/belle/Role=NULL/Capability=NULL", "/belle/calib/Role=expert/Capability=NULL"],
        )
        data = proxy_file.read_bytes()
        certificates = parse_chain(data)
        proxy, eec = certificates[0], certificates[1]
        ca = pki.ca.credential.certificate
        ac = decode_ac_extension(ac_extension_of(proxy))[0]
        aa_key = ac.aa_certificates[0].public_key()

        def baseline() -> None:
            proxy.verify_directly_issued_by(eec)
            eec.verify_directly_issued_by(ca)
            ac.aa_certificates[0].verify_directly_issued_by(ca)
            aa_key.verify(ac.signature, ac.tbs, padding.PKCS1v15(), SIGNATURE_HASHES[ac.signature_hash]())

        uncached_authenticator = Authenticator(pki.ca_dir, pki.vomsdir, host=HOST, use_cache=False)
        cached_authenticator = Authenticator(pki.ca_dir, pki.vomsdir, host=HOST)
        check = uncached_authenticator.authenticate(data)
        if not check.authenticated or check.voms_errors or not check.fqans:
            raise SystemExit(f"benchmark chain did not validate: {check.to_json()}")
        cached_authenticator.authenticate(data)  # warm the cache

        base = median_seconds(baseline, repeat=7, number=200)
        uncached = median_seconds(lambda: uncached_authenticator.authenticate(data), repeat=7, number=100)
        cached = median_seconds(lambda: cached_authenticator.authenticate(data), repeat=7, number=20000)

    print("auth benchmark: proxy (1 AC, 2 FQANs) -> EEC -> CA, RSA-2048, SHA-256")
    print(f"  baseline (4 bare signature checks): {base * 1e6:9.1f} us   1.00x")
    print(f"  full validation, uncached:          {uncached * 1e6:9.1f} us   {uncached / base:5.2f}x baseline   "
          f"goal < {GOAL_UNCACHED_S * 1e3:.0f} ms: {'met' if uncached < GOAL_UNCACHED_S else 'MISSED'}")
    print(f"  full validation, cached:            {cached * 1e6:9.1f} us   {cached / base:5.3f}x baseline   "
          f"goal < {GOAL_CACHED_S * 1e6:.0f} us: {'met' if cached < GOAL_CACHED_S else 'MISSED'}")


if __name__ == "__main__":
    main()
