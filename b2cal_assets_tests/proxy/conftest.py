"""Fixtures of the proxy tests; the machinery is in harness.py (shared with bench/bench_proxy.py)."""

from __future__ import annotations

from .harness import front_proxy, tls_proxy, world  # noqa: F401 - pytest fixtures
