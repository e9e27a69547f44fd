"""HTML pages the server shows to people (not to the protocol client): the activation page and the lab CA.

A browser that opens an activation link (``Accept: text/html``, no ``?download=1``) gets a page instead of
bare JSON, and the link is **not** redeemed by it: the page shows, when the server speaks TLS, the lab CA's
SHA-256 fingerprint to compare aloud with the instructor's, the one notebook call that checks and trusts the
CA and redeems the link, and download buttons (profile, CA) for doing it by hand.
:func:`helpers.recipient.activate` and other clients still get the profile JSON at once.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from helpers.tls import TlsFiles, ca_pem

__all__ = ["CA_ROUTE", "activation_page", "ca_response", "wants_html"]

#: Where the lab CA certificate is served (public; the recipient side fetches it by this path).
CA_ROUTE = "/lab-ca.pem"

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45}code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:4px}"
    "pre{padding:.6rem;overflow-x:auto}.fp{font-family:monospace;font-size:1.05rem;"
    "word-break:break-all;background:#fff7d6;padding:.5rem;border:1px solid #e0c200}"
    "a.button{display:inline-block;background:#1f6feb;color:#fff;padding:.5rem 1rem;"
    "border-radius:6px;text-decoration:none}"
)


def wants_html(request: Request) -> bool:
    """Whether the caller is a browser (asks for HTML before JSON)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and accept.find("text/html") < (
        accept.find("application/json") if "application/json" in accept else len(accept)
    )


def ca_response(tls: TlsFiles | None) -> Response:
    """The lab CA certificate (PEM), or 404 when the server does not speak TLS."""
    if tls is None:
        return Response("this server does not use TLS\n", status_code=404, media_type="text/plain")
    return Response(
        ca_pem(tls),
        media_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="sharelab-lab-ca.pem"'},
    )


def _trust_block(tls: TlsFiles) -> str:
    fp = html.escape(tls.fingerprint)
    return f"""
<h2>Check the certificate</h2>
<p>This server's certificate is signed by the workshop's own certificate authority (lab CA). Its SHA-256
fingerprint is:</p>
<p class="fp">{fp}</p>
<p>Compare it with the one the instructor shows. If it differs, stop: you are not talking to the
instructor's machine. Certificate checks stay on in every step below; nothing is disabled.</p>"""


def activation_page(link: str, tls: TlsFiles | None) -> HTMLResponse:
    """The page a browser gets for an activation link. It does NOT redeem the link: link previews and
    prefetching cannot burn it; the attendee redeems it from a notebook or with the download button."""
    fp = tls.fingerprint if tls else None
    call = "from helpers import recipient\n" + (
        f"recipient.activate_with_ca({link!r}, 'me.share',\n    '{fp}')"
        if fp
        else f"recipient.activate({link!r}, 'me.share')"
    )
    ca_button = (
        f' <a class="button" href="{CA_ROUTE}" download="sharelab-lab-ca.pem">Download the lab CA</a>'
        if tls
        else ""
    )
    by_hand = (
        "save both files in one folder, as <code>me.share</code> and <code>me.share.ca.pem</code>; "
        "the recipient helpers trust the CA beside a profile when they load it"
        if tls
        else "save it as <code>me.share</code>"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sharelab: activate your Delta Sharing profile</title>
<meta name="referrer" content="no-referrer"><style>{_STYLE}</style></head><body>
<h1>Activate your Delta Sharing profile</h1>
<p>This link works <b>once</b>: it gives you a profile file holding your secret token (treat it like a
password). Opening this page has not used it yet.</p>
{_trust_block(tls) if tls else ""}
<h2>One step, in your notebook (recommended)</h2>
<p>It {
        "fetches the lab CA, accepts it only with this fingerprint, trusts it for the client's API calls and "
        "file downloads, "
        if tls
        else ""
    }redeems the link and saves your profile:</p>
<pre>{html.escape(call)}</pre>
<h2>Or by hand</h2>
<p><a class="button" href="?download=1" download="me.share">Download my profile</a>{ca_button}</p>
<p>Then {by_hand}. Point the recipient notebooks' <code>profile_path</code> at it.</p>
</body></html>"""
    return HTMLResponse(
        page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
