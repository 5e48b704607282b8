"""Benchmark: accounts sync of a 10,000-user / 20,000-DN registry from a real DiracX server.

Run from the repository root: ``.venv/bin/python bench/bench_dirac_sync.py`` (needs the
test-only server venv: ``scripts/setup-diracx-server-venv``). Starts DiracX 0.7.0 on a
loopback port with a generated registry, then times, in the same run:

* baseline: a plain HTTP GET of ``/api/config/`` (bearer token, JSON decoded), i.e. the
  floor any sync pays to receive the same configuration;
* full sync: ``sync_from_diracx(force=True)`` (diracx-client fetch, schema validation and
  mapping, atomic replacement of the whole set in the store, diff), into SQLite and, when
  reachable, PostgreSQL; the ratio to the baseline;
* unchanged sync: the same call with the stored ETag (one 304);
* lookup_dn: one indexed statement per call, and from the proxy's cached view.

Times are medians. Options: ``--users N`` (default 10000), ``--repeat N`` (default 5),
``--no-postgres``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import sqlalchemy as sa  # noqa: E402

from b2cal_assets.accounts.diracx_source import DiracxSettings, fetch_config  # noqa: E402
from b2cal_assets.accounts.registry import accounts_from_config  # noqa: E402
from b2cal_assets.accounts.sync import sync_from_diracx  # noqa: E402
from b2cal_assets.accounts.view import AccountsView  # noqa: E402
from b2cal_assets.database import dispose_engine, platform_database  # noqa: E402
from b2cal_assets_tests.accounts.diracx_server import DiracxTestServer  # noqa: E402
from b2cal_assets_tests.accounts.registries import synthetic  # noqa: E402

POSTGRES_SERVER_URL = os.environ.get("B2CAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def plain_get(url: str, token: str) -> dict:
    request = urllib.request.Request(f"{url}/api/config/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@contextmanager
def postgres_database() -> Iterator[str | None]:
    server_url = sa.engine.make_url(POSTGRES_SERVER_URL).set(drivername="postgresql+psycopg2")
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"b2cal_bench_{uuid.uuid4().hex[:10]}"
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        print("PostgreSQL not reachable: skipping the PostgreSQL figures")
        yield None
        return
    url = sa.engine.make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def bench_backend(label: str, url: str, settings: DiracxSettings, dns: list[str], baseline: float, repeat: int) -> None:
    store = platform_database(url).accounts()
    start = time.perf_counter()
    first = sync_from_diracx(store, settings)
    first_s = time.perf_counter() - start
    assert first.account_count and first.changed
    full = median_seconds(lambda: sync_from_diracx(store, settings, force=True), repeat)
    unchanged = median_seconds(lambda: sync_from_diracx(store, settings), repeat * 4)
    assert not sync_from_diracx(store, settings).changed

    sample = random.Random(7).choices(dns, k=2000)
    start = time.perf_counter()
    for dn in sample:
        assert store.lookup_dn(dn) is not None
    lookup = (time.perf_counter() - start) / len(sample)
    view = AccountsView(store, recheck_seconds=3600)
    view.lookup_dn(sample[0])  # first call loads the DN map
    start = time.perf_counter()
    for dn in sample:
        assert view.lookup_dn(dn) is not None
    cached = (time.perf_counter() - start) / len(sample)

    print(f"[{label}]")
    print(f"  first sync into an empty store    {first_s * 1e3:9.1f} ms")
    print(f"  full sync (force, replace + diff) {full * 1e3:9.1f} ms   ratio to plain GET {full / baseline:5.2f}")
    print(f"  unchanged sync (one 304)          {unchanged * 1e3:9.1f} ms")
    print(f"  lookup_dn (one indexed SELECT)    {lookup * 1e6:9.1f} us")
    print(f"  lookup_dn (AccountsView cache)    {cached * 1e6:9.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dirac-") as workdir:
        root = Path(workdir)
        server = DiracxTestServer(root / "diracx")
        server.prepare()
        server.start()
        try:
            credentials = server.mint_credentials(root / "credentials.json")
            users, groups = synthetic(args.users, dns_per_user=2)
            etag = server.set_registry(users, groups, f"{args.users} users", VOMSName="belle")
            server.wait_served(etag, credentials, timeout=120)
            token = json.loads(credentials.read_text())["access_token"]
            settings = DiracxSettings(url=server.url, credentials_path=credentials, timeout_seconds=120)

            config = plain_get(server.url, token)  # warm the server's content cache
            n_users = len(config["Registry"]["belle"]["Users"])
            n_dns = sum(len(u["DNs"]) for u in config["Registry"]["belle"]["Users"].values())
            size = len(json.dumps(config))
            baseline = median_seconds(lambda: plain_get(server.url, token), args.repeat)
            fetch = median_seconds(lambda: fetch_config(settings), args.repeat)
            mapping_served = median_seconds(
                lambda: accounts_from_config(config, "belle", served_by_diracx=True), args.repeat
            )
            mapping_file = median_seconds(lambda: accounts_from_config(config, "belle"), args.repeat)

            print(f"registry: {n_users} users, {n_dns} DNs, {size / 1e6:.1f} MB of JSON; ETag {etag[:12]}")
            print(f"  plain HTTP GET /api/config/       {baseline * 1e3:9.1f} ms   (baseline)")
            print(f"  diracx-client fetch               {fetch * 1e3:9.1f} ms   ratio {fetch / baseline:5.2f}")
            print(f"  validation + mapping (as served)  {mapping_served * 1e3:9.1f} ms")
            print(f"  validation + mapping (file, with e-mail checks) {mapping_file * 1e3:7.1f} ms")
            bench_backend("sqlite", f"sqlite:///{root / 'bench.sqlite'}", settings, _dns(users), baseline, args.repeat)
            dispose_engine(f"sqlite:///{root / 'bench.sqlite'}")
            if not args.no_postgres:
                with postgres_database() as pg_url:
                    if pg_url:
                        bench_backend("postgresql", pg_url, settings, _dns(users), baseline, args.repeat)
        finally:
            server.stop()


def _dns(users: dict) -> list[str]:
    return [dn for user in users.values() for dn in user["DNs"]]


if __name__ == "__main__":
    main()
