"""Where the review pages live, for links from elsewhere (report assets, notifications).

The base URL is a deployment setting, ``B2CAL_WEB_URL`` (e.g. ``https://b2cal.kek.jp/b2cal``:
the proxy's address, its path prefix and ``/b2cal``). Unset: no link is written, since the
code location cannot know the host name the reviewers' browsers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from b2cal_assets import config

WEB_URL_ENV = config.WEB_URL.env


def web_base_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured base URL of the review pages without a trailing slash, or None."""
    value = (config.WEB_URL.raw(environ) or "").strip()
    return value.rstrip("/") or None


def bucket_page_url(bucket: str, environ: Mapping[str, str] | None = None, *, calibration: str | None = None) -> str | None:
    """The review page of ``bucket`` (anchored at ``calibration``), or None without a base URL."""
    base = web_base_url(environ)
    if base is None:
        return None
    anchor = f"#cal-{quote(calibration, safe='')}" if calibration else ""
    return f"{base}/buckets/{quote(bucket, safe='')}{anchor}"
