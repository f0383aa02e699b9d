"""``blurface review``: a local page to check every track, flip decisions, add missed faces and render.

The page shows biometric data (faces, and which of them belong to whom), so:

* the server binds to 127.0.0.1 only, on a free port, and every request must carry a
  random token (``secrets.token_urlsafe``): in the URL's query or the ``X-Blurface-Token``
  header. There is no cookie: browsers send a cookie for 127.0.0.1 to every port on it
  (another local server would receive it), and two reviews would overwrite each other's.
  The page's script and style sheet, the package's own code with no data in it, are the
  only things served without the token;
* a request whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused
  (DNS rebinding: another site's name pointed at 127.0.0.1 would send its own Host);
* a change (POST) needs the token in the header, which a page of another origin cannot
  set without a CORS preflight this server never answers, and an ``Origin``, when sent,
  that is this server's own;
* only what the review made is served, by name from a fixed table (the page, the proxy,
  thumbnails held in memory): no request path ever reaches the file system;
* the page builds itself from data with DOM nodes and ``textContent`` only (a plan file is
  untrusted input), and the Content-Security-Policy allows no inline script or handler;
* every request is read with bounds and types (a byte count of digits, a body of at most
  64 KiB, JSON without NaN or infinities, each field of the type and range it must have) and
  answered 4xx where it is wrong; a socket idle for ``request_timeout`` seconds is closed, and
  at most ``max_connections`` are served at once (more are answered 503), so idle sockets
  cannot hold a thread each. A client that goes away is logged at debug level, never printed.

The stack is the standard library's ``ThreadingHTTPServer``: one reviewer, a handful of
JSON calls and one video file do not need a framework, and it adds no dependency.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .session import ReviewSession
from .types import BlurfaceError, InputError, OutputError

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024  # a JSON change is a few hundred bytes
_MAX_INT = 2**31 - 1  # ids, frames, people: numpy compares int64 without overflow below this
# A browser opens at most 6 connections to one host; the rest is headroom for a second tab.
MAX_CONNECTIONS = 32
# Seconds a socket may wait for the next byte (either way) before it is closed. A paused
# video's connection is dropped after this, and the browser opens another when it plays.
REQUEST_TIMEOUT = 30.0
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# The page's own code and style, served without the token (no data in them): the page's
# <script src> and <link href> cannot carry the token.
_ASSETS = {"/review.js": ("review.js", "text/javascript; charset=utf-8"),
           "/review.css": ("review.css", "text/css; charset=utf-8")}


# --------------------------------------------------------------------------- HTTP


def page_html() -> bytes:
    return importlib.resources.files("blurface").joinpath("review.html").read_bytes()


def _asset(name: str) -> bytes:
    return importlib.resources.files("blurface").joinpath(name).read_bytes()


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server of one review; ``url`` carries the token.

    Args:
        session: what the page reviews; may be set later (``server.session = ...``), before
            ``serve_forever``: the CLI takes its port before the analysis, so a busy port is
            refused at once.
        port: on 127.0.0.1; 0 for a free one.
        max_connections: connections served at once; more are answered 503 and closed.
        request_timeout: seconds a socket may stay silent before it is closed.

    Raises:
        InputError: the port cannot be listened on (in use, or reserved).
    """

    daemon_threads = True
    # Stopping does not wait for open connections (a browser keeps its own open): the threads
    # are daemons, and a socket left idle closes itself after ``request_timeout``.
    block_on_close = False

    def __init__(self, session: ReviewSession | None, port: int = 0, *, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.session = session  # type: ignore[assignment]
        self.token = secrets.token_urlsafe(32)
        self.page = page_html()
        self.assets = {path: (_asset(name), ctype) for path, (name, ctype) in _ASSETS.items()}
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._held: set[int] = set()  # id() of the requests holding a slot
        self._held_lock = threading.Lock()
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as e:
            raise InputError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e}): "
                             "choose another port, or leave --port out for a free one") from e
        self.port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's names
        # A thread per connection, but only while a slot is free: 600 idle sockets must not hold 600 threads.
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._held_lock:
            self._held.add(id(request))
        try:
            super().process_request(request, client_address)
        except BaseException:
            # Ctrl-C can land after the thread started: then both would give the slot back.
            self._release(request)
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: socket.socket) -> None:
        """Give back ``request``'s slot, once, whoever asks first."""
        with self._held_lock:
            if id(request) not in self._held:
                return
            self._held.discard(id(request))
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = b'{"error": "too many connections: close other tabs of this review"}'
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        # The standard library prints a traceback on the terminal here; a reviewer's browser
        # that drops a connection (a seek, a closed tab) is not an error worth one.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("review: a connection ended early: %s", error)
        else:
            log.warning("review: a request failed: %s: %s (run with --debug for details)", type(error).__name__, error)
            log.debug("details", exc_info=True)


_THUMB = re.compile(r"/thumb/(\d+-\d+)\.jpg")
_RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")  # 15 digits: a petabyte; more is no file of ours


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large: send finite numbers")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number: send finite numbers")


class _Body:
    """A POST's JSON object, read field by field with its type and range; a wrong field raises ``ValueError``."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def _get(self, key: str) -> object:
        if key not in self.data:
            raise ValueError(f"{key!r} is missing: send it")
        return self.data[key]

    def int(self, key: str, *, optional: bool = False) -> int | None:
        value = self.data.get(key) if optional else self._get(key)
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
            raise ValueError(f"{key!r} must be a whole number from 0 to {_MAX_INT}, got {str(value)[:40]!r}")
        return value

    def bool(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise ValueError(f"{key!r} must be true or false, got {str(value)[:40]!r}")
        return value

    def text(self, key: str, limit: int) -> str:
        value = self.data.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{key!r} must be text, got {str(value)[:40]!r}")
        return value[:limit]

    def box(self, key: str) -> list[float]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{key!r} must be [x1, y1, x2, y2], four numbers")
        return [float(v) for v in value]


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # read by StreamRequestHandler.setup: the socket's timeout
        self._started = False
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        # Never the full line: the first request's path carries the token. Called before the
        # request line is parsed too (a 414), when the path is not set yet.
        path = getattr(self, "path", "") or ""
        log.debug("%s %s", getattr(self, "command", "") or "-", urlsplit(path[:300]).path)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The base class's errors (a 414, a bad request line, too many headers) as ours: JSON, same headers.
        self._error(code, message or HTTPStatus(code).phrase)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError) as e:
            # The browser went away mid-answer (a seek, a closed tab): nothing to tell anyone.
            log.debug("review: connection ended: %s", e)
            self.close_connection = True

    # ----- checks ---------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if self.headers.get("Host", "") not in self.server.hosts:
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header: open the URL blurface printed")
            return False
        return True

    def _allowed(self, *, write: bool) -> bool:
        if not self._host_ok():
            return False
        token = self.server.token.encode()
        header = self.headers.get("X-Blurface-Token", "")
        if write:
            origin = self.headers.get("Origin")
            if origin is not None and origin not in self.server.origins:
                self._error(HTTPStatus.FORBIDDEN, "cross-origin request refused")
                return False
            if not secrets.compare_digest(header.encode(), token):
                self._error(HTTPStatus.FORBIDDEN, "missing or wrong token")
                return False
            return True
        query = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if not any(secrets.compare_digest(g.encode(), token) for g in (query, header) if g):
            self._error(HTTPStatus.FORBIDDEN, "missing or wrong token: open the URL blurface printed")
            return False
        return True

    # ----- responses --------------------------------------------------------------------------

    def _headers(self, status: int, ctype: str, length: int, extra: dict[str, str] | None = None) -> None:
        self._started = True
        if status >= 400:
            # The request may not have been read to its end: never read what follows as a request.
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", _CSP)
        if self.close_connection:
            self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self._headers(status, ctype, len(body), extra)
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _guarded(self, answer) -> None:  # noqa: ANN001 - a bound method
        """Run ``answer``; a failure the checks did not foresee is a 500 and one log line, never a traceback."""
        try:
            answer()
        except (ConnectionError, TimeoutError):
            raise  # handle_one_request: the client went away
        except Exception as e:  # noqa: BLE001 - the server must keep serving the review
            log.warning("review: %s %s failed: %s: %s", self.command, urlsplit(self.path).path[:100],
                        type(e).__name__, e)
            log.debug("details", exc_info=True)
            if not self._started:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}")
            else:
                self.close_connection = True

    # ----- GET ----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._guarded(self._get)

    def do_GET(self) -> None:  # noqa: N802
        self._guarded(self._get)

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path in self.server.assets:
            if self._host_ok():
                body, ctype = self.server.assets[path]
                self._send(200, body, ctype)
            return
        if not self._allowed(write=False):
            return
        found = _route("GET", path)
        answer = None if found is None else found[0](_Request(self.server, found[1], _Body({}), ""))
        self._answer(answer)

    def _answer(self, answer: object) -> None:
        """Send a route's answer: bytes as they are, a file with byte ranges, anything else as JSON."""
        if answer is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
        elif isinstance(answer, _Raw):
            self._send(200, answer.body, answer.ctype)
        elif isinstance(answer, _File):
            self._file(answer.path, answer.ctype)
        else:
            self._json(answer)

    def _file(self, path: Path, ctype: str) -> None:
        """Serve one file the review made, with byte ranges (browsers seek video with them)."""
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        header = self.headers.get("Range")
        if header is not None:
            ranged = _RANGE.fullmatch(header.strip())
            if ranged and ranged.group(1):
                start = int(ranged.group(1))
                end = min(end, int(ranged.group(2))) if ranged.group(2) else end
            elif ranged and ranged.group(2):
                start = max(0, size - int(ranged.group(2)))
            if not ranged or not (ranged.group(1) or ranged.group(2)) or start > end or start >= size:
                # Also one range of digits we can read: several ranges, or 5000 digits, are not for this file.
                self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                           json.dumps({"error": f"send one byte range within 0-{size - 1}"}).encode(),
                           "application/json", {"Content-Range": f"bytes */{size}"})
                return
            status = HTTPStatus.PARTIAL_CONTENT
        extra = {"Accept-Ranges": "bytes"}
        if status == HTTPStatus.PARTIAL_CONTENT:
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._headers(status, ctype, end - start + 1, extra)
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(left, 256 * 1024))
                if not chunk:
                    break
                self.wfile.write(chunk)  # a seek elsewhere drops the connection: handle_one_request
                left -= len(chunk)

    # ----- POST ---------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _read_body(self) -> dict | None:
        """The request's JSON object, read with bounds; ``None`` once an error is answered."""
        if self.headers.get("Transfer-Encoding"):
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
            return None
        given = self.headers.get("Content-Length")
        if given is not None and not re.fullmatch(r"\d{1,9}", given.strip()):
            self._error(HTTPStatus.BAD_REQUEST, f"Content-Length {given[:20]!r} is not a byte count")
            return None
        length = int(given) if given is not None else 0
        if length > _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request too large: at most {_MAX_BODY} bytes")
            return None
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
            return None
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            self.close_connection = True  # the client stopped sending: nobody reads an answer
            return None
        try:
            body = json.loads(raw or b"{}", parse_float=_finite, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:  # ValueError: also a 5000-digit number
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON we read: {str(e)[:120]}")
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            return None
        return body

    def _post(self) -> None:
        if not self._allowed(write=True):
            return
        body = self._read_body()
        if body is None:
            return
        try:
            data = _Body(body)
            reason = data.text("reason", 200)  # read first, on every path: a bad one is a 400 anywhere
            found = _route("POST", urlsplit(self.path).path)
            result = None if found is None else found[0](_Request(self.server, found[1], data, reason))
        except KeyError as e:
            self._error(HTTPStatus.NOT_FOUND, str(e.args[0]) if e.args else "not found")
            return
        except (InputError, ValueError, TypeError) as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        except OutputError as e:  # Render's output exists: the page shows the line
            self._error(HTTPStatus.CONFLICT, str(e))
            return
        except BlurfaceError as e:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e))
            return
        self._answer(result)


# --------------------------------------------------------------------------- routes
#
# What each request asks of the session, by method and path: the only place a path is read.
# A route takes the checked request and returns its answer (``None``: 404); the handler
# above does the HTTP (checks, bounds, status codes). POST routes change the review only
# through ReviewSession, whose changes are the plan's own edits.


@dataclass(frozen=True)
class _Raw:
    body: bytes
    ctype: str


@dataclass(frozen=True)
class _File:
    path: Path
    ctype: str


@dataclass(frozen=True)
class _Request:
    server: ReviewServer
    match: re.Match[str]  # the route's pattern on the path
    body: _Body  # a POST's JSON object (empty for GET)
    reason: str  # a POST's "reason", cut to 200 characters

    @property
    def session(self) -> ReviewSession:
        return self.server.session


def _thumb(r: _Request) -> _Raw | None:
    data = r.session.thumbs.get(r.match.group(1))
    return None if data is None else _Raw(data, "image/jpeg")


def _set_track(r: _Request) -> dict:
    b = r.body
    tid = r.session.set_track(b.int("id"), b.bool("masked"), r.reason, b.int("first", optional=True),
                              b.int("last", optional=True))
    return {"ok": True, "track": tid}


def _trim(r: _Request) -> dict:
    r.session.trim(r.body.int("id"), r.body.int("first"), r.body.int("last"), r.reason)
    return {"ok": True}


def _split_person(r: _Request) -> dict:
    r.session.split_person(r.body.int("track"))
    return {"ok": True}


def _merge_people(r: _Request) -> dict:
    r.session.merge_people(r.body.int("a"), r.body.int("b"))
    return {"ok": True}


def _start_render(r: _Request) -> dict:
    r.session.start_render()
    return {"ok": True}


Route = Callable[[_Request], object]

# (method, path pattern, matched whole) -> route.
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): lambda r: _Raw(r.server.page, "text/html; charset=utf-8"),
    ("GET", "/api/state"): lambda r: r.session.state(),
    ("GET", "/api/render"): lambda r: r.session.render_state(),
    ("GET", r"/proxy\.mp4"): lambda r: _File(r.session.proxy, "video/mp4"),
    ("GET", _THUMB.pattern): _thumb,
    ("POST", "/api/track"): _set_track,
    ("POST", "/api/trim"): _trim,
    ("POST", "/api/person"): lambda r: {"ok": True, "tracks": r.session.set_person(
        r.body.int("person"), r.body.bool("masked"), r.reason)},
    ("POST", "/api/person/split"): _split_person,
    ("POST", "/api/person/merge"): _merge_people,
    ("POST", "/api/person/save"): lambda r: {"ok": True, "path": str(r.session.save_person(
        r.body.int("person"), r.body.text("name", 100)))},
    ("POST", "/api/box"): lambda r: {"ok": True, "track": r.session.add_box(
        r.body.int("frame"), r.body.box("box"), r.reason)},
    ("POST", "/api/save"): lambda r: {"ok": True, "path": str(r.session.save())},
    ("POST", "/api/render"): _start_render,
}
_PATTERNS = [(method, re.compile(path), route) for (method, path), route in ROUTES.items()]


def _route(method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    """The route for ``method`` (HEAD is asked as GET) and ``path``, and its match; ``None``: no such route."""
    for m, pattern, route in _PATTERNS:
        if m == method and (match := pattern.fullmatch(path)):
            return route, match
    return None


def start(session: ReviewSession, port: int = 0, **options: object) -> tuple[ReviewServer, threading.Thread]:
    """Start serving ``session`` in a background thread (for tests and embedding); stop with ``stop``.

    ``options``: ``max_connections`` and ``request_timeout`` of :class:`ReviewServer`.
    """
    server = ReviewServer(session, port, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, name="blurface-review", daemon=True)
    thread.start()
    return server, thread


def stop(server: ReviewServer, thread: threading.Thread | None = None) -> None:
    """Stop the server, close its socket, stop a render and remove the review's temp folder."""
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join()
    server.session.close()
