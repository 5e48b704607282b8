"""The proxy's own HTML pages for browsers: certificate missing (401), certificate problem (403),
other refusals. Pure: text in, HTML out (every value escaped)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}"
          "h1{font-size:1.5rem}code,kbd{background:#f2f2f2;padding:0 .25rem;border-radius:3px}li{margin:.2rem 0}"
          ".problem{border-left:4px solid #c0392b;padding:.4rem .8rem;background:#fdf1f0}")

IMPORT_STEPS = """<h2>Import your grid certificate into the browser</h2>
<p>Your grid certificate and key are usually <code>~/.globus/usercert.pem</code> and
<code>~/.globus/userkey.pem</code>. Browsers import them as one PKCS#12 file:</p>
<pre><code>openssl pkcs12 -export -in ~/.globus/usercert.pem -inkey ~/.globus/userkey.pem -name "grid certificate" -out mycert.p12</code></pre>
<ul>
<li><b>Firefox</b>: Settings &rarr; Privacy &amp; Security &rarr; Certificates &rarr; <i>View Certificates</i> &rarr;
<i>Your Certificates</i> &rarr; <i>Import</i>, choose <code>mycert.p12</code> and give its password.</li>
<li><b>Chrome, Chromium, Edge</b>: Settings &rarr; Privacy and security &rarr; Security &rarr; <i>Manage certificates</i>
&rarr; <i>Your certificates</i> &rarr; <i>Import</i> (on Linux; on Windows and macOS the system certificate store).</li>
<li><b>Safari</b>: open <code>mycert.p12</code> in Keychain Access (login keychain).</li>
</ul>
<p>Then reload this page and choose the certificate when the browser asks.</p>"""


def _ca_list(ca_subjects: Iterable[str]) -> str:
    subjects = sorted(set(ca_subjects))
    if not subjects:
        return "<p>No certification authority is configured on this server.</p>"
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in subjects)
    return f"<h2>Accepted certification authorities</h2><p>Certificates issued by these CAs are accepted:</p><ul>{items}</ul>"


def _page(status: int, title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title><style>{_STYLE}</style>"
            f"<h1>{status} {escape(title)}</h1>{body}</html>")


def certificate_required_page(reason: str, ca_subjects: Iterable[str]) -> str:
    """401: the browser presented no client certificate."""
    body = (f"<p class=problem>{escape(reason)}: this site identifies you by your grid (X.509) user certificate, "
            "and your browser did not present one.</p>" + IMPORT_STEPS + _ca_list(ca_subjects))
    return _page(401, "Certificate required", body)


def certificate_problem_page(problem: str, advice: str, ca_subjects: Iterable[str]) -> str:
    """403: a certificate was presented but its chain failed verification."""
    body = (f"<p class=problem><b>{escape(problem)}</b>: {escape(advice)}.</p>"
            "<p>If you hold another, valid grid certificate, import it (below) and restart the browser so it "
            "asks again.</p>" + IMPORT_STEPS + _ca_list(ca_subjects))
    return _page(403, "Certificate not accepted", body)


def refusal_page(status: int, title: str, reason: str) -> str:
    return _page(status, title, f"<p class=problem>{escape(reason)}</p>")
