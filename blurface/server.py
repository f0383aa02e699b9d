"""``blurface review``: a local page to check every track, flip decisions, add missed faces and render.

The page shows biometric data (faces, and which of them belong to whom), so:

* the server binds to 127.0.0.1 only, on a free port, and every request must carry a
  random token (``secrets.token_urlsafe``): in the URL, a cookie set by the first page
  load, or the ``X-Blurface-Token`` header;
* a request whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused
  (DNS rebinding: another site's name pointed at 127.0.0.1 would send its own Host);
* a change (POST) needs the token in the header, which a page of another origin cannot
  set without a CORS preflight this server never answers, and an ``Origin``, when sent,
  that is this server's own;
* only what the review made is served, by name from a fixed table (the page, the proxy,
  thumbnails held in memory): no request path ever reaches the file system.

The stack is the standard library's ``ThreadingHTTPServer``: one reviewer, a handful of
JSON calls and one video file do not need a framework, and it adds no dependency.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from . import overlay, people
from .embedding import Embeds
from .files import make_temp_dir
from .follow import add_manual_track
from .pipeline import RenderSettings
from .plan import Plan
from .types import BlurfaceError, InputError, Interrupted

log = logging.getLogger(__name__)

PROXY_HEIGHT = 360
THUMBS_PER_TRACK = 3
_COOKIE = "blurface_token"
_MAX_BODY = 64 * 1024  # a JSON change is a few hundred bytes


@dataclass
class RenderJob:
    state: str = "idle"  # idle, running, done, failed
    done: int = 0
    total: int = 0
    output: str = ""
    error: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class ReviewSession:
    """One video under review: its plan, the proxy, thumbnails, people groups and the review log.

    Args:
        plan: the plan to review (changed in place by the reviewer's actions).
        src: the video.
        save_path: where Save writes the reviewed plan (atomically).
        output: where Render writes the masked video.
        people_dir: where a person saved from the page goes (``NAME.npz``).
        embedder: embeds tracks that have no embeddings, for grouping; ``None``: no grouping.
        render_settings: mask effect, shape, pad and encoding of Render.
        overwrite: Render may replace ``output`` (checked by the caller before the review).
    """

    def __init__(
        self,
        plan: Plan,
        src: str | os.PathLike,
        *,
        save_path: str | os.PathLike,
        output: str | os.PathLike,
        people_dir: str | os.PathLike,
        embedder: Embeds | None = None,
        render_settings: RenderSettings = RenderSettings(),
        overwrite: bool = False,
    ) -> None:
        self.plan = plan
        self.src = str(src)
        self.save_path = Path(save_path)
        self.output = Path(output)
        self.people_dir = Path(people_dir)
        self.embedder = embedder
        self.render_settings = render_settings
        self.overwrite = overwrite
        self.lock = threading.RLock()
        self.job = RenderJob()
        self._render_thread: threading.Thread | None = None
        # Unmasked video: in a private temp folder (mode 0700), removed by close(), or by a
        # later run should this one be killed.
        self.workdir = make_temp_dir("review")
        self.proxy = self.workdir / "proxy.mp4"
        self.thumbs: dict[str, bytes] = {}
        self.groups: list[list[int]] = []

    # ----- preparation ----------------------------------------------------------------------

    def prepare(self, progress=None) -> None:  # noqa: ANN001 - review.Progress
        """Make the proxy and thumbnails, and group tracks into people."""
        from .review import PREVIEW_ENCODE, render_range

        # The proxy is plain (nothing masked, nothing drawn): the page draws the boxes from
        # JSON, so a toggle shows at once without encoding anything again.
        bare = Plan(video=self.plan.video, mode=self.plan.mode, settings={}, tracks=[], times=self.plan.times)
        render_range(bare, self.proxy, height=PROXY_HEIGHT, src=self.src,
                     settings=RenderSettings(encode=PREVIEW_ENCODE), progress=progress)
        self._make_thumbs([t for t in self.plan.tracks])
        if self.embedder is not None:
            people.fill_embeddings(self.plan, self.embedder, src=self.src)
            self.groups = people.group_tracks(self.plan.tracks)
        else:
            self.groups = [[t.id] for t in self.plan.tracks]

    def _make_thumbs(self, tracks: list) -> None:
        from . import media

        wanted: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for t in tracks:
            for k, f in enumerate(overlay.sheet_frames(t, THUMBS_PER_TRACK)):
                wanted.setdefault(f, []).append((t.id, k, t.xyxy[int(np.searchsorted(t.frames, f))]))
        if not wanted:
            return
        info = media.probe(self.src)
        for frame in media.iter_frames(info, start=float(self.plan.times[min(wanted)]),
                                       end=float(self.plan.times[max(wanted)]) + 1e-3, times=self.plan.times):
            for tid, k, box in wanted.get(frame.index, []):
                tile = cv2.resize(overlay.face_tile(frame.image, box), (72, 72), interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    self.thumbs[f"{tid}-{k}"] = data.tobytes()

    def close(self) -> None:
        """Stop a running render (its partial file is removed) and delete the temp folder."""
        self.job.cancel.set()
        if self._render_thread is not None:
            self._render_thread.join()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ----- what the page reads ------------------------------------------------------------------

    def state(self) -> dict:
        with self.lock:
            plan = self.plan
            person = {tid: k for k, g in enumerate(self.groups) for tid in g}
            tracks = [
                {
                    "id": t.id, "first": t.first, "last": t.last, "identity": t.identity, "distance": t.distance,
                    "decision": t.decision, "masked": t.masked, "reason": t.reason,
                    "category": overlay.category(t), "person": person.get(t.id),
                    "thumbs": [f"thumb/{t.id}-{k}.jpg" for k in range(THUMBS_PER_TRACK) if f"{t.id}-{k}" in self.thumbs],
                    "frames": [int(f) for f in t.frames],
                    "boxes": [[round(float(v), 1) for v in b] for b in t.xyxy],
                }
                for t in plan.tracks
            ]
            return {
                "video": {"name": Path(self.src).name, "width": plan.video.width, "height": plan.video.height,
                          "fps": float(plan.video.fps) if plan.video.fps else 30.0, "frames": plan.frame_count},
                "times": [round(float(x - plan.times[0]), 6) for x in plan.times],
                "mode": plan.mode,
                "tracks": tracks,
                "people": [list(g) for g in self.groups],
                "review": list(plan.review),
                "save_path": str(self.save_path),
                "output": str(self.output),
                "render": self.render_state(),
            }

    def render_state(self) -> dict:
        j = self.job
        return {"state": j.state, "done": j.done, "total": j.total, "output": j.output, "error": j.error}

    # ----- the reviewer's actions ---------------------------------------------------------------

    def set_track(self, track_id: int, masked: bool, reason: str = "", first: int | None = None,
                  last: int | None = None) -> int:
        """Mask or keep a track, or only its frames ``first..last``; returns the id of the changed track."""
        with self.lock:
            track = self.plan.track(track_id)
            if first is not None or last is not None:
                lo = track.first if first is None else int(first)
                hi = track.last if last is None else int(last)
                if hi < lo:
                    raise InputError(f"frame range {lo}-{hi} is empty: give 'from' at or before 'to'")
                before = {t.id for t in self.plan.tracks}
                track = self.plan.split(track_id, lo, hi)
                for t in self.plan.tracks:
                    if t.id not in before:  # new pieces belong to the same person
                        self._group_of(track_id).append(t.id)
                        self._thumbs_from(track_id, t.id)
            action = "mask" if masked else "keep"
            why = f"reviewer override: {'masked' if masked else 'kept'}" + (f" ({reason})" if reason else "")
            self.plan.override(track.id, masked=masked, reason=why)
            self.plan.log_review(action, track.id, reason, frames=[track.first, track.last])
            return track.id

    def trim(self, track_id: int, first: int, last: int, reason: str = "") -> None:
        """Keep only frames ``first..last`` of a track (a hand-added one that ran too far)."""
        with self.lock:
            track = self.plan.track(track_id)
            keep = (track.frames >= first) & (track.frames <= last)
            if not keep.any():
                raise InputError(f"frames {first}-{last} hold no frame of track {track_id}: it runs {track.first}-{track.last}")
            track.frames, track.xyxy, track.source = track.frames[keep], track.xyxy[keep], track.source[keep]
            self.plan.log_review("trim", track_id, reason, frames=[track.first, track.last])

    def set_person(self, index: int, masked: bool, reason: str = "") -> list[int]:
        with self.lock:
            ids = list(self._group(index))
            for tid in ids:
                self.set_track(tid, masked, reason)
            return ids

    def split_person(self, track_id: int) -> None:
        """Take a track out of its group into a group of its own."""
        with self.lock:
            self._group_of(track_id).remove(track_id)
            self.groups = [g for g in self.groups if g] + [[track_id]]
            self.plan.log_review("split", track_id, "")

    def merge_people(self, a: int, b: int) -> None:
        with self.lock:
            ga, gb = self._group(a), self._group(b)
            if ga is gb:
                return
            ga.extend(gb)
            self.groups.remove(gb)
            self.plan.log_review("merge", None, "", tracks=sorted(ga))

    def save_person(self, index: int, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name.endswith(".npz"):
            raise InputError(f"name {name!r}: use letters, digits, '_', '.' and '-' (the file becomes NAME.npz)")
        with self.lock:
            ids = list(self._group(index))
            self.people_dir.mkdir(parents=True, exist_ok=True)
            path = self.people_dir / f"{name}.npz"
            people.save_person(self.plan, ids, path, name=name)
            self.plan.log_review("save_person", None, "", tracks=ids, gallery=str(path))
            return path

    def add_box(self, frame: int, box: list[float], reason: str = "") -> int:
        with self.lock:
            track = add_manual_track(self.plan, frame, box, reason=reason, src=self.src)
            self.groups.append([track.id])
            self._make_thumbs([track])
            return track.id

    def save(self) -> Path:
        with self.lock:
            self.plan.log_review("save", None, "", path=str(self.save_path))
            self.plan.save(self.save_path)
            return self.save_path

    def start_render(self) -> None:
        from .pipeline import render

        with self.lock:
            if self.job.state == "running":
                raise InputError("a render is already running: wait for it to finish")
            # A snapshot, so changes made during the render wait for the next one.
            plan = self.plan.as_saved()
            self.plan.log_review("render", None, "", output=str(self.output))
            self.job = job = RenderJob(state="running", total=plan.frame_count, output=str(self.output))

        def progress(stage: str, n: int) -> None:
            if job.cancel.is_set():
                raise Interrupted("review stopped")
            job.done += n

        def work() -> None:
            try:
                render(plan, self.output, settings=self.render_settings, src=self.src,
                       overwrite=self.overwrite or self.output.exists() and self._rendered_before, progress=progress)
                self._rendered_before = True
                job.state = "done"
            except BlurfaceError as e:
                job.state, job.error = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - shown on the page as one line, logged in full
                log.exception("render failed")
                job.state, job.error = "failed", f"{type(e).__name__}: {e}"

        self._render_thread = threading.Thread(target=work, name="blurface-render", daemon=True)
        self._render_thread.start()

    _rendered_before = False

    # ----- helpers ----------------------------------------------------------------------

    def _group(self, index: int) -> list[int]:
        if not 0 <= index < len(self.groups):
            raise InputError(f"there is no person {index + 1}: the page lists {len(self.groups)}")
        return self.groups[index]

    def _group_of(self, track_id: int) -> list[int]:
        for g in self.groups:
            if track_id in g:
                return g
        self.groups.append([])
        return self.groups[-1]

    def _thumbs_from(self, old: int, new: int) -> None:
        for k in range(THUMBS_PER_TRACK):
            if f"{old}-{k}" in self.thumbs:
                self.thumbs[f"{new}-{k}"] = self.thumbs[f"{old}-{k}"]


# --------------------------------------------------------------------------- HTTP


def page_html() -> bytes:
    return importlib.resources.files("blurface").joinpath("review.html").read_bytes()


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server of one review; ``url`` carries the token."""

    daemon_threads = True

    def __init__(self, session: ReviewSession, port: int = 0) -> None:
        self.session = session
        self.token = secrets.token_urlsafe(32)
        self.page = page_html()
        super().__init__(("127.0.0.1", port), _Handler)
        self.port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


_THUMB = re.compile(r"/thumb/(\d+-\d+)\.jpg")


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        # Never the full line: the first request's path carries the token.
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    # ----- checks ---------------------------------------------------------------------------

    def _allowed(self, *, write: bool) -> bool:
        if self.headers.get("Host", "") not in self.server.hosts:
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header: open the URL blurface printed")
            return False
        token = self.server.token
        header = self.headers.get("X-Blurface-Token", "")
        if write:
            origin = self.headers.get("Origin")
            if origin is not None and origin not in self.server.origins:
                self._error(HTTPStatus.FORBIDDEN, "cross-origin request refused")
                return False
            if not secrets.compare_digest(header.encode(), token.encode()):
                self._error(HTTPStatus.FORBIDDEN, "missing or wrong token")
                return False
            return True
        query = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie is no token
            cookie = SimpleCookie()
        given = [query, header, cookie[_COOKIE].value if _COOKIE in cookie else ""]
        if not any(secrets.compare_digest(g.encode(), token.encode()) for g in given if g):
            self._error(HTTPStatus.FORBIDDEN, "missing or wrong token: open the URL blurface printed")
            return False
        return True

    # ----- responses --------------------------------------------------------------------------

    def _headers(self, status: int, ctype: str, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
            "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self._headers(status, ctype, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    # ----- GET ----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._allowed(write=False):
            return
        path = urlsplit(self.path).path
        session = self.server.session
        if path == "/":
            cookie = f"{_COOKIE}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
            self._send(200, self.server.page, "text/html; charset=utf-8", {"Set-Cookie": cookie})
        elif path == "/api/state":
            self._json(session.state())
        elif path == "/api/render":
            self._json(session.render_state())
        elif path == "/proxy.mp4":
            self._file(session.proxy, "video/mp4")
        elif (m := _THUMB.fullmatch(path)) and m.group(1) in session.thumbs:
            self._send(200, session.thumbs[m.group(1)], "image/jpeg")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def _file(self, path: Path, ctype: str) -> None:
        """Serve one file the review made, with byte ranges (browsers seek video with them)."""
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if ranged and (ranged.group(1) or ranged.group(2)):
            if ranged.group(1):
                start = int(ranged.group(1))
                end = min(end, int(ranged.group(2))) if ranged.group(2) else end
            else:
                start = max(0, size - int(ranged.group(2)))
            if start > end or start >= size:
                self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", ctype, {"Content-Range": f"bytes */{size}"})
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
            try:
                while left > 0:
                    chunk = f.read(min(left, 256 * 1024))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser seeks elsewhere and drops the connection

    # ----- POST ---------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed(write=True):
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = self._act(urlsplit(self.path).path, body)
        except KeyError as e:
            self._error(HTTPStatus.NOT_FOUND, str(e.args[0]) if e.args else "not found")
            return
        except (InputError, ValueError, TypeError) as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        except BlurfaceError as e:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e))
            return
        if result is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        self._json(result)

    def _act(self, path: str, body: dict) -> dict | None:
        s = self.server.session
        reason = str(body.get("reason", ""))[:200]

        def opt_int(key: str) -> int | None:
            v = body.get(key)
            return None if v in (None, "") else int(v)

        if path == "/api/track":
            tid = s.set_track(int(body["id"]), bool(body["masked"]), reason, opt_int("first"), opt_int("last"))
            return {"ok": True, "track": tid}
        if path == "/api/trim":
            s.trim(int(body["id"]), int(body["first"]), int(body["last"]), reason)
            return {"ok": True}
        if path == "/api/person":
            return {"ok": True, "tracks": s.set_person(int(body["person"]), bool(body["masked"]), reason)}
        if path == "/api/person/split":
            s.split_person(int(body["track"]))
            return {"ok": True}
        if path == "/api/person/merge":
            s.merge_people(int(body["a"]), int(body["b"]))
            return {"ok": True}
        if path == "/api/person/save":
            return {"ok": True, "path": str(s.save_person(int(body["person"]), str(body["name"])))}
        if path == "/api/box":
            box = [float(v) for v in body["box"]]
            if len(box) != 4:
                raise ValueError("'box' must be [x1, y1, x2, y2]")
            return {"ok": True, "track": s.add_box(int(body["frame"]), box, reason)}
        if path == "/api/save":
            return {"ok": True, "path": str(s.save())}
        if path == "/api/render":
            s.start_render()
            return {"ok": True}
        return None


def start(session: ReviewSession, port: int = 0) -> tuple[ReviewServer, threading.Thread]:
    """Start serving ``session`` in a background thread (for tests and embedding); stop with ``stop``."""
    server = ReviewServer(session, port)
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
