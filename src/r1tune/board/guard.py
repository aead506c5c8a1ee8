"""What every board request passes before a route runs: Host, API key, CSRF token, body size.

    app = BoardGuard(app, api_key=None, secret=board_secret(runs), max_body_bytes=1_000_000, max_upload_bytes=…)

- Without an API key only loopback Host names are answered (400 otherwise): a web page whose name resolves to
  127.0.0.1 sends its own name as Host (DNS rebinding) and must not reach the board. `r1tune board` refuses
  to bind a non-loopback address without a key.
- With a key, a request carries it (Authorization: Bearer KEY) or the session cookie the login form sets
  (HttpOnly, SameSite=Strict, an HMAC of the key: the key itself is never stored in the browser). A browser
  asking for a page without either is sent to /login; anything else is 401.
- Every request that changes something (POST, PUT, DELETE) carries X-CSRF-Token, the token the page was
  served with. A cross-site form cannot set that header, and a cross-site script cannot read the page to
  learn the token (no CORS headers are ever sent). The login form, which has no token yet, must come from
  the board's own origin (Origin / Referer checked). Answered 403 otherwise.
- Bodies over the limits are 413 (uploads have their own, larger one).

The secret behind the cookie and the token lives in RUNS/.board/secret (mode 0600), so a restarted board
keeps its users signed in and its open pages working.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse, RedirectResponse

from r1tune.board.paths import BOARD_STATE
from r1tune.serve.hosts import is_loopback_host

SESSION_COOKIE = "r1tune_board"
CSRF_HEADER = b"x-csrf-token"
UPLOAD_PATH = "/api/upload"
OPEN_PATHS = ("/login", "/static/board.css")  # answered without the key (the login page and its style)
CHANGING = ("POST", "PUT", "PATCH", "DELETE")


def board_secret(runs: Path) -> bytes:
    """The board's secret, made once per runs folder and kept in RUNS/.board/secret."""
    folder = runs / BOARD_STATE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret"
    try:
        value = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(value) >= 32:
            return value
    except (OSError, ValueError):
        pass
    value = secrets.token_bytes(32)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value.hex())
    os.replace(path.with_suffix(".tmp"), path)
    return value


def csrf_token(secret: bytes) -> str:
    return hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()


def session_value(secret: bytes, api_key: str) -> str:
    return hmac.new(secret, b"session:" + api_key.encode(), hashlib.sha256).hexdigest()


def key_matches(given: str, api_key: str) -> bool:
    return hmac.compare_digest(given.encode(), api_key.encode())


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """The request's Origin (else Referer) names the Host it was sent to."""
    source = headers.get(b"origin") or headers.get(b"referer")
    if not source:
        return False
    return urlsplit(source.decode("latin-1")).netloc.lower() == headers.get(b"host", b"").decode("latin-1").lower()


class BoardGuard:
    """ASGI middleware on every route (see the module's docstring)."""

    def __init__(self, app, api_key: str | None, secret: bytes, max_body_bytes: int, max_upload_bytes: int):
        self.app, self.api_key, self.secret = app, api_key, secret
        self.max_body_bytes, self.max_upload_bytes = max_body_bytes, max_upload_bytes
        self.csrf = csrf_token(secret).encode()
        self.session = session_value(secret, api_key) if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope, dict(scope["headers"]))
        if refusal is not None:
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)

    def refusal(self, scope, headers: dict[bytes, bytes]):
        """The answer that stops this request, or None to let it through."""
        path, method = scope["path"], scope["method"]
        if self.api_key is None and not is_loopback_host(headers.get(b"host", b"")):
            return _error(400, "without an API key the board answers only Host: localhost, 127.0.0.1 or [::1]")
        if self.api_key is not None and path not in OPEN_PATHS and not self.signed_in(headers):
            if method == "GET" and b"text/html" in headers.get(b"accept", b""):
                return RedirectResponse("/login", status_code=303)
            return _error(401, "missing or wrong API key (Authorization: Bearer KEY, or sign in)",
                          {"www-authenticate": "Bearer"})
        if method in CHANGING:
            if path == "/login":
                if not same_origin(headers):
                    return _error(403, "the sign-in form must be sent from the board's own page")
            elif not hmac.compare_digest(headers.get(CSRF_HEADER, b""), self.csrf):
                return _error(403, "csrf: missing or stale X-CSRF-Token: reload the page")
            length = headers.get(b"content-length", b"")
            limit = self.max_upload_bytes if path == UPLOAD_PATH else self.max_body_bytes
            if length and (not length.isdigit() or int(length) > limit):
                return _error(413, f"request body larger than {limit} bytes", {"connection": "close"})
        return None

    def signed_in(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"authorization", b"")
        if given[:7].lower() == b"bearer ":
            return hmac.compare_digest(given[7:].strip(), self.api_key.encode())
        cookie = _cookie(headers, SESSION_COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
