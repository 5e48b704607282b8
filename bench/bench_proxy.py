"""Benchmark: dagster-webserver direct, through Debian's nginx, and through the b2cal proxy.

Run from the repository root: ``.venv/bin/python bench/bench_proxy.py [--seconds 3] [--rounds 3] [--concurrency 1,4,16]``.
Starts, in a temporary directory, the test PKI, an accounts store, a real dagster-webserver on
loopback, Debian's nginx as a plain reverse proxy (generated config, no daemon, stopped by its
pid; plain HTTP and TLS with the same server certificate, no client certificates and no
authorisation), the b2cal proxy as its own process (``b2cal proxy``: TLS with client
certificates, the full role check on; the client presents a voms-proxy-fake proxy) and the
same server without the role check (bench/passthrough_proxy.py). All are driven in the same
run by the same keep-alive load generator (aiohttp) with a small GraphQL query and a static
file, at each concurrency given, in interleaved rounds (direct, nginx, ..., then again), so
that drifting machine load hits every target alike; medians over the rounds are printed.

Reports requests/s, p50/p99 latency and, per target, the throughput ratio and the p50 overhead
against direct. Goals (issue 6), for the b2cal proxy: ratio >= 0.8, p50 overhead < 2 ms. The
machine's cores are shared by the load generator, the proxies and the webserver: at a
concurrency that saturates them, a proxy's CPU time is taken from the webserver, so also read
the figures at low concurrency (1 client: pure added latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
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

from b2cal_assets_tests.proxy.harness import World, client_context, free_port, make_world  # noqa: E402

QUERY = json.dumps({"query": "query Version { version }"}).encode()
GOAL_RATIO = 0.8
GOAL_P50_OVERHEAD_MS = 2.0
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """\
worker_processes 1;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream dagster {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_timeout 4s;  # below uvicorn's 5 s idle timeout
    }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://dagster;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx in the foreground on two free loopback ports (HTTP and TLS)."""

    def __init__(self, world: World, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.http_port, self.tls_port = free_port(), free_port()
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=root, upstream=world.webserver_port, http_port=self.http_port, tls_port=self.tls_port,
                                          cert=world.pki.host.cert_path, key=world.pki.host.key_path))
        self.pid_file = root / "nginx.pid"
        self.process = subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log"),
                                         "-g", f"daemon off; pid {self.pid_file};"], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/server_info", timeout=2).read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    error_log = root / "error.log"
                    self.stop()
                    raise RuntimeError("nginx did not start: " + (error_log.read_text()[-2000:] if error_log.exists() else "")) from None
                time.sleep(0.2)

    def version(self) -> str:
        result = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
        return result.stderr.strip().split("/")[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)  # graceful: the master stops its worker
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


async def load(url: str, *, body: bytes | None, ssl_context, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl_context if ssl_context is not None else False)
    async with aiohttp.ClientSession(connector=connector) as session:
        method = "POST" if body is not None else "GET"
        headers = {"Content-Type": "application/json"} if body is not None else {}

        async def one() -> None:
            nonlocal errors
            async with session.request(method, url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up: connections, caches
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await one()
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
        "p50_ms": 1e3 * statistics.median(latencies), "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children still running (nginx's worker), from /proc."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return total


def wait_for_proxy(process: subprocess.Popen, port: int, context) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/server_info", context=context, timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{process.args} did not start on port {port}")


def start_b2cal_proxy(world: World, root: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}", "upstream": f"http://127.0.0.1:{world.webserver_port}",
        "cert": str(world.pki.host.cert_path), "key": str(world.pki.host.key_path), "ca_dir": str(world.pki.ca_dir),
        "vomsdir": str(world.pki.vomsdir), "accounts_db": world.accounts_url,
    }
    (root / "proxy.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([str(Path(sys.executable).parent / "b2cal"), "proxy", "--config", str(root / "proxy.yaml"),
                                "--log-level", "WARNING"], stdin=subprocess.DEVNULL)
    return process, port


def start_passthrough(world: World, root: Path) -> tuple[subprocess.Popen, int]:
    """The reference without the role check (bench/passthrough_proxy.py), same config file format."""
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}", "upstream": f"http://127.0.0.1:{world.webserver_port}",
        "cert": str(world.pki.host.cert_path), "key": str(world.pki.host.key_path), "ca_dir": str(world.pki.ca_dir),
    }
    (root / "passthrough.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("passthrough_proxy.py")), str(root / "passthrough.yaml")],
                               stdin=subprocess.DEVNULL)
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


TARGETS = ("nginx", "nginx-tls", "passthrough", "b2cal-proxy")


def print_table(rounds: list[dict], concurrency: int) -> None:
    """Median over rounds of each figure; ratio and overhead are taken per round against that round's direct run."""
    print(f"\nconcurrency {concurrency} (median of {len(rounds)} interleaved rounds)")
    print(f"{'request':<8} {'target':<12} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'ratio':>6} {'p50 +ms':>8} "
          f"{'cpu us/req':>10}")
    for label in rounds[0]:
        for target in rounds[0][label]:
            rows = [r[label][target] for r in rounds]
            directs = [r[label]["direct"] for r in rounds]
            ratio = statistics.median(row["rps"] / direct["rps"] for row, direct in zip(rows, directs))
            overhead = statistics.median(row["p50_ms"] - direct["p50_ms"] for row, direct in zip(rows, directs))
            verdict = ""
            if target == "b2cal-proxy":
                met = ratio >= GOAL_RATIO and overhead < GOAL_P50_OVERHEAD_MS
                verdict = "  goal met" if met else "  goal missed"
            cpu = f"{statistics.median(r['cpu_us'] for r in rows):10.0f}" if "cpu_us" in rows[0] else f"{'':>10}"
            print(f"{label:<8} {target:<12} {statistics.median(r['rps'] for r in rows):7.0f} "
                  f"{statistics.median(r['p50_ms'] for r in rows):7.2f} {statistics.median(r['p99_ms'] for r in rows):7.2f} "
                  f"{sum(r['errors'] for r in rows):6d} {ratio:6.2f} {overhead:+8.2f} {cpu}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency (medians are printed)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--only", default="", help=f"comma-separated targets to measure besides direct ({', '.join(TARGETS)})")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    wanted = {t for t in args.only.split(",") if t} or set(TARGETS)
    if not Path(NGINX).exists():
        raise SystemExit("nginx not found: apt-get install -y nginx-light (listed in .ci/apt-packages.d/proxy.txt)")
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, make_world(Path(tmp)) as world:
        root = Path(tmp)
        nginx = Nginx(world, root / "nginx")
        proxy, port = start_b2cal_proxy(world, root)
        passthrough, passthrough_port = start_passthrough(world, root)
        try:
            context = client_context(world, world.proxy_file("viewer"))
            wait_for_proxy(proxy, port, context)
            wait_for_proxy(passthrough, passthrough_port, context)
            server_context = client_context(world, None)
            index = urllib.request.urlopen(f"http://127.0.0.1:{world.webserver_port}/").read().decode()
            static = re.search(r'src="(/[^"]+\.js)"', index)
            static_path = static.group(1) if static else "/favicon.png"
            targets = {
                "direct": (f"http://127.0.0.1:{world.webserver_port}", None, None),
                "nginx": (f"http://127.0.0.1:{nginx.http_port}", None, nginx.process.pid),
                "nginx-tls": (f"https://127.0.0.1:{nginx.tls_port}", server_context, nginx.process.pid),
                "passthrough": (f"https://127.0.0.1:{passthrough_port}", context, passthrough.pid),
                "b2cal-proxy": (f"https://127.0.0.1:{port}", context, proxy.pid),
            }
            targets = {name: target for name, target in targets.items() if name == "direct" or name in wanted}
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{world.webserver_port}{static_path}").read())
            print(f"nginx {nginx.version()}, {os.cpu_count()} cores (load average before: {os.getloadavg()[0]:.1f}), "
                  f"{args.rounds} rounds of {args.seconds:.0f} s per target, loopback; static file {static_path} ({size} bytes)",
                  flush=True)
            for concurrency in levels:
                rounds: list[dict[str, dict[str, dict[str, float]]]] = []
                for _ in range(args.rounds):
                    results: dict[str, dict[str, dict[str, float]]] = {}
                    for label, path, body in (("graphql", "/graphql", QUERY), ("static", static_path, None)):
                        results[label] = {}
                        for target, (base, ssl_context, pid) in targets.items():
                            before = cpu_seconds(pid) if pid else 0.0
                            row = asyncio.run(load(base + path, body=body, ssl_context=ssl_context, seconds=args.seconds,
                                                   concurrency=concurrency))
                            if pid:  # CPU the proxy spent per request (warm-up requests included: a small overestimate)
                                row["cpu_us"] = 1e6 * (cpu_seconds(pid) - before) / max(row["requests"], 1)
                            results[label][target] = row
                    rounds.append(results)
                print_table(rounds, concurrency)
                sys.stdout.flush()
        finally:
            stop(proxy)
            stop(passthrough)
            nginx.stop()
    print(f"\nratio = req/s / direct req/s; p50 +ms = p50 - direct p50 (both per round, then the median). Goal for "
          f"b2cal-proxy: ratio >= {GOAL_RATIO}, p50 overhead < {GOAL_P50_OVERHEAD_MS:.0f} ms. The direct path and nginx are "
          "plain HTTP; nginx-tls, passthrough and b2cal-proxy add TLS on the client side (passthrough and b2cal-proxy verify "
          "a client certificate). passthrough is b2cal-proxy's server and forwarding without the role check "
          "(bench/passthrough_proxy.py): b2cal-proxy minus passthrough is the cost of authentication and authorisation. "
          "cpu us/req: CPU time of the proxy process(es) per request, less sensitive to other load than req/s.")


if __name__ == "__main__":
    main()
