"""Benchmark reference: the b2cal proxy's serving path without authentication or authorisation.

Same aiohttp server, same TLS server context (client certificates verified by OpenSSL), same
forwarding pool and header handling as ``b2cal proxy``, but no account lookup, no VOMS, no
GraphQL classification: what is left when the role check costs nothing. bench_proxy.py
compares it with the real proxy to split the overhead into "aiohttp + TLS" and "the check".
Never deploy this: it lets every verified certificate do everything.

Usage: python bench/passthrough_proxy.py CONFIG.yaml (the proxy's config file format).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from b2cal_assets.proxy.config import ProxyConfig, load_config  # noqa: E402
from b2cal_assets.proxy.headers import forward_request_headers, forward_response_headers  # noqa: E402
from b2cal_assets.proxy.server import make_server_ssl_context, new_event_loop  # noqa: E402
from b2cal_assets.proxy.upstream_http import UpstreamPool  # noqa: E402


async def main(config: ProxyConfig) -> None:
    host, port = config.listen_host_port
    upstream = urlsplit(config.upstream)
    pool = UpstreamPool(upstream.hostname or "127.0.0.1", upstream.port or 80)

    async def forward(request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        headers = forward_request_headers(list(request.headers.items()), client_ip="127.0.0.1", scheme="https", host=request.host)
        target = request.rel_url.raw_path_qs
        upstream = await pool.request(request.method, target, headers, body if body or request.method not in ("GET", "HEAD") else None,
                                      retry_safe=request.method in ("GET", "HEAD"))
        try:
            return web.Response(status=upstream.status, reason=upstream.reason, body=await upstream.read(),
                                headers=CIMultiDict(forward_response_headers(upstream.headers)))
        finally:
            upstream.release()

    runner = web.ServerRunner(web.Server(forward, access_log=None), handle_signals=True)  # as b2cal proxy serves
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=make_server_ssl_context(config), backlog=512).start()
    try:
        await asyncio.Event().wait()
    finally:
        await pool.close()
        await runner.cleanup()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(load_config(Path(sys.argv[1]), {})))
