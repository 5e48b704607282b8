"""Benchmark: throughput and latency through the b2cal proxy vs direct to dagster-webserver.

Run from the repository root: ``.venv/bin/python bench/bench_proxy.py [--seconds 8] [--concurrency 16]``.
Starts, in a temporary directory, the test PKI, an accounts store, a real dagster-webserver on
loopback and the proxy as its own process (``b2cal proxy``, TLS with client certificates, the
full role check on), then drives both with the same keep-alive load generator (aiohttp) for
a small GraphQL query and a static file. The proxy client presents a voms-proxy-fake proxy.

Reports requests/s, p50/p99 latency, the throughput ratio proxy/direct and the p50 overhead.
Goals (issue 6): ratio >= 0.8, p50 overhead < 2 ms. Note that the direct path is plain HTTP
while the proxy path adds TLS on the client side; both are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from b2cal_assets_tests.proxy.harness import client_context, free_port, make_world  # noqa: E402

QUERY = json.dumps({"query": "query Version { version }"}).encode()
GOAL_RATIO = 0.8
GOAL_P50_OVERHEAD_S = 2e-3


async def load(url: str, *, body: bytes | None, ssl_context, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl_context if ssl_context is not None else False)
    async with aiohttp.ClientSession(connector=connector) as session:
        method = "POST" if body is not None else "GET"
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for _ in range(concurrency):  # warm-up: connections, caches
            async with session.request(method, url, data=body, headers=headers) as response:
                await response.read()
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.request(method, url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
        "p50_ms": 1e3 * statistics.median(latencies), "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def wait_for_proxy(process: subprocess.Popen, port: int, context) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"b2cal proxy exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/server_info", context=context, timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("b2cal proxy did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, make_world(Path(tmp)) as world:
        port = free_port()
        config = {
            "listen": f"127.0.0.1:{port}", "upstream": f"http://127.0.0.1:{world.webserver_port}",
            "cert": str(world.pki.host.cert_path), "key": str(world.pki.host.key_path), "ca_dir": str(world.pki.ca_dir),
            "vomsdir": str(world.pki.vomsdir), "accounts_db": world.accounts_url,
        }
        (Path(tmp) / "proxy.yaml").write_text(yaml.safe_dump(config))
        proxy = subprocess.Popen([str(Path(sys.executable).parent / "b2cal"), "proxy", "--config", str(Path(tmp) / "proxy.yaml"),
                                  "--log-level", "WARNING"], stdin=subprocess.DEVNULL)
        try:
            context = client_context(world, world.proxy_file("viewer"))
            wait_for_proxy(proxy, port, context)
            index = urllib.request.urlopen(f"http://127.0.0.1:{world.webserver_port}/").read().decode()
            static = re.search(r'src="(/[^"]+\.js)"', index)
            static_path = static.group(1) if static else "/favicon.png"
            results = {}
            for label, path, body in (("graphql", "/graphql", QUERY), ("static", static_path, None)):
                direct = asyncio.run(load(f"http://127.0.0.1:{world.webserver_port}{path}", body=body, ssl_context=None,
                                          seconds=args.seconds, concurrency=args.concurrency))
                proxied = asyncio.run(load(f"https://127.0.0.1:{port}{path}", body=body, ssl_context=context,
                                           seconds=args.seconds, concurrency=args.concurrency))
                results[label] = (direct, proxied)
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)
    print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per measurement, loopback")
    print(f"{'request':<9} {'path':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for label, (direct, proxied) in results.items():
        for name, row in (("direct", direct), ("proxy", proxied)):
            print(f"{label:<9} {name:<7} {row['rps']:8.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['errors']:6d}")
        ratio = proxied["rps"] / direct["rps"]
        overhead = (proxied["p50_ms"] - direct["p50_ms"]) / 1e3
        verdict = "meets" if ratio >= GOAL_RATIO and overhead < GOAL_P50_OVERHEAD_S else "misses"
        print(f"{label:<9} ratio {ratio:.2f} (goal >= {GOAL_RATIO}), p50 overhead {overhead * 1e3:.2f} ms "
              f"(goal < {GOAL_P50_OVERHEAD_S * 1e3:.0f} ms): {verdict} the goal")


if __name__ == "__main__":
    main()
