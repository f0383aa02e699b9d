"""``blurface review``'s server over HTTP (standard-library client), and its people and hand boxes.

The fast tests review a plan made from a generated clip's exact truth (two real people,
no detector); the shared tests analyse the hamilton clip and judge from its truth file.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from blurface.decisions import DEFAULT_TOLERANCE
from blurface import media
from blurface.boxes import iou_matrix
from blurface.evaluate import box_is_masked, load_truth, score
from blurface.plan import Plan
from blurface.server import ReviewSession, start, stop

from people import make_people_clip, package_heads, plan_from_truth, shared_dir

pytestmark = pytest.mark.slow




@pytest.fixture
def server_options() -> dict:
    """Options of the review fixture's server (a test overrides this fixture to change them)."""
    return {}


@pytest.fixture
def review(tmp_path: Path, server_options: dict):
    clip = make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=30, width=384, height=216, face_px=56)
    plan_path = tmp_path / "two.plan.json"
    plan = plan_from_truth(clip, plan_path)
    session = ReviewSession(plan, clip.path, save_path=plan_path, output=tmp_path / "two.reviewed.mp4",
                            people_dir=tmp_path / "people")
    session.prepare()
    server, thread = start(session, **server_options)
    yield clip, plan_path, server
    stop(server, thread)
    assert not session.workdir.exists(), "the review's temp folder was left behind"


def _get(server, path: str, *, token: bool = True, headers: dict | None = None) -> tuple[int, bytes]:
    sep = "&" if "?" in path else "?"
    url = f"http://127.0.0.1:{server.port}{path}" + (f"{sep}token={server.token}" if token else "")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _rendered(server) -> dict:  # noqa: ANN001
    """The render's state once it is no longer running (at most 2 minutes)."""
    for _ in range(600):
        state = json.loads(_get(server, "/api/render")[1])
        if state["state"] != "running":
            return state
        time.sleep(0.2)
    return state


def _post(server, path: str, body: dict, *, token: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    h = {"Content-Type": "application/json", "X-Blurface-Token": server.token if token is None else token}
    h.update(headers or {})
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=json.dumps(body).encode(), headers=h)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_every_request_needs_the_token(review) -> None:
    _, _, server = review
    assert _get(server, "/", token=False)[0] == 403
    assert _get(server, "/api/state", token=False)[0] == 403
    assert _get(server, "/proxy.mp4", token=False)[0] == 403
    assert _get(server, "/?token=wrong" + server.token[5:], token=False)[0] == 403
    status, page = _get(server, "/")
    assert status == 200 and b"blurface review" in page
    # The page's own script and style carry no data: served without the token, to this Host only.
    for asset in ("/review.js", "/review.css"):
        assert _get(server, asset, token=False)[0] == 200
        assert _get(server, asset, token=False, headers={"Host": f"evil.example:{server.port}"})[0] == 403
    # A write needs the token in its header: the cookie a browser would send is not enough.
    status, _ = _post(server, "/api/save", {}, token="", headers={"Cookie": f"blurface_token={server.token}"})
    assert status == 403
    assert _post(server, "/api/save", {})[0] == 200


def test_a_bad_host_or_a_foreign_origin_is_refused(review) -> None:
    _, _, server = review
    for host in ("evil.example:80", f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.2:{server.port}"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("GET", f"/api/state?token={server.token}", headers={"Host": host})
        response = conn.getresponse()
        assert response.status == 403, host
        assert b"tracks" not in response.read()
        conn.close()
    assert _get(server, "/api/state", headers={"Host": f"localhost:{server.port}"})[0] == 200
    status, _ = _post(server, "/api/track", {"id": 1, "masked": True}, headers={"Origin": "http://evil.example"})
    assert status == 403
    state = json.loads(_get(server, "/api/state")[1])
    assert not next(t for t in state["tracks"] if t["id"] == 1)["masked"], "a refused write changed the plan"


def test_only_files_the_review_made_are_served(review) -> None:
    _, plan_path, server = review
    status, body = _get(server, "/proxy.mp4", headers={"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100
    assert _get(server, "/thumb/0-0.jpg")[1][:2] == b"\xff\xd8"
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/thumb/../../etc/passwd",
                 "/thumb/..%2f..%2fetc%2fpasswd.jpg", f"/{plan_path}", f"/{plan_path.name}", "/review.html",
                 "/proxy.mp4/../server.py", "//etc/passwd"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("GET", f"{path}?token={server.token}", headers={"Host": f"127.0.0.1:{server.port}"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 404, path
        assert b"root:" not in body and b"tracks" not in body


def test_a_toggle_through_the_api_is_in_the_saved_plan_with_its_reason(review) -> None:
    _, plan_path, server = review
    before = plan_path.read_text()
    assert "review" not in json.loads(before), "an unreviewed plan must keep its old form"
    assert _post(server, "/api/track", {"id": 0, "masked": False, "reason": "consent given"}) == (
        200, {"ok": True, "track": 0})
    assert plan_path.read_text() == before, "nothing is written before Save"
    assert _post(server, "/api/save", {})[0] == 200
    plan = Plan.load(plan_path)
    assert not plan.track(0).masked and "consent given" in plan.track(0).reason
    assert plan.track(1).masked is False
    entry = plan.review[0]
    assert (entry["action"], entry["track"], entry["reason"]) == ("keep", 0, "consent given")
    assert entry["time"].endswith("+00:00")
    assert plan.review[-1]["action"] == "save"
    assert _post(server, "/api/track", {"id": 99, "masked": True})[0] == 404


def _masked_frames(original: Path, output: Path, boxes: list) -> list[bool]:
    a, b = media.probe(original), media.probe(output)
    return [box_is_masked(fa.image, fb.image, boxes[fa.index])
            for fa, fb in zip(media.iter_frames(a), media.iter_frames(b))]


def test_render_follows_the_toggles_and_a_frame_range(review, tmp_path: Path) -> None:
    clip, _, server = review
    assert _post(server, "/api/track", {"id": 0, "masked": False, "reason": "consent given"})[0] == 200
    status, answer = _post(server, "/api/track", {"id": 1, "masked": True, "reason": "minor", "first": 10, "last": 19})
    assert status == 200 and answer["track"] != 1, "the masked part is a track of its own"
    assert _post(server, "/api/render", {})[0] == 200
    state = _rendered(server)
    assert state["state"] == "done", state
    assert state["done"] == state["total"] == 30
    out = Path(state["output"])
    astronaut = _masked_frames(clip.path, out, clip.boxes_of("astronaut"))
    hopper = _masked_frames(clip.path, out, clip.boxes_of("hopper"))
    assert not any(astronaut)
    assert hopper == [10 <= i <= 19 for i in range(30)]


def test_review_command_prints_a_url_and_ctrl_c_leaves_nothing(review, tmp_path: Path) -> None:
    clip, plan_path, _ = review
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "blurface", "review", str(clip.path), "--plan", str(plan_path), "-q",
         "-o", str(tmp_path / "x.mp4")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = lines[1].split()[1]
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        assert len(url.split("token=")[1]) >= 40
        with urllib.request.urlopen(url) as r:
            assert r.status == 200
        assert list(temp.iterdir()), "the proxy lives in the temp folder while the review runs"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "review stopped" in err and "Traceback" not in err
    assert list(temp.iterdir()) == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_people_command_writes_a_sheet_and_one_gallery_per_person(tmp_path: Path, capsys) -> None:
    from blurface.cli import main
    from blurface.faces import FaceEngine
    from blurface.gallery import Gallery, person_from_photos
    from people import astronaut_photo, hopper_photo
    import cv2

    clip = make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=24, width=384, height=216, face_px=56)
    assert main(["people", str(clip.path), "-o", str(tmp_path / "people"), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["person 1", "person 2"]
    assert cv2.imread(str(tmp_path / "people" / "people.png")) is not None
    engine = FaceEngine()
    refs = {}
    for name, photo in (("astronaut", astronaut_photo()), ("hopper", hopper_photo())):
        cv2.imwrite(str(tmp_path / f"{name}.png"), photo)
        refs[name] = person_from_photos(tmp_path / f"{name}.png", engine).embeddings
    found = set()
    for k in (1, 2):
        person = Gallery.load(tmp_path / "people" / f"person_{k}.npz").people[0]
        d = {n: float(np.linalg.norm(person.embeddings - e, axis=1).mean()) for n, e in refs.items()}
        who = min(d, key=d.get)
        assert d[who] < DEFAULT_TOLERANCE < max(d.values()), d
        found.add(who)
    assert found == {"astronaut", "hopper"}, "each person has a gallery of their own"


# --------------------------------------------------------------------------- the shared clip


@pytest.fixture(scope="module")
def hamilton():
    """The shared clip analysed with --all (every face a track), with embeddings filled in for grouping."""
    from blurface.embedders import make_embedder
    from blurface.pipeline import make_plan

    media_dir = shared_dir()  # module scope: conftest's shared_media is per test
    clip = media_dir / "hamilton_clip.mp4"
    plan = make_plan(clip, all_faces=True)
    return clip, plan, load_truth(media_dir / "hamilton_truth.json"), make_embedder()


def _label_tracks(plan: Plan, truth: list[list[dict]]) -> dict[int, dict[str, int]]:
    """Per track, how many of its frames lie on each labelled person's truth box (IoU >= 0.3)."""
    labels: dict[int, dict[str, int]] = {}
    for t in plan.tracks:
        for f, box in zip(t.frames, t.xyxy):
            for face in truth[int(f)] if f < len(truth) else []:
                if iou_matrix(np.array([face["box"]], np.float32), box[None])[0, 0] >= 0.3:
                    counts = labels.setdefault(t.id, {})
                    counts[face["who"]] = counts.get(face["who"], 0) + 1
    return labels


@pytest.mark.shared
def test_hamilton_people_groups_do_not_mix_people(hamilton, tmp_path: Path) -> None:
    from blurface.people import fill_embeddings, group_tracks

    clip, plan, truth, embedder = hamilton
    fill_embeddings(plan, embedder, src=clip)
    groups = group_tracks(plan.tracks)
    labels = _label_tracks(plan, truth)
    person_of = {tid: k for k, g in enumerate(groups) for tid in g}
    # Per person and group: the person's truth frames the group's tracks cover (a face found
    # twice on one frame counts once).
    frames_in: dict[str, dict[int, set[int]]] = {}
    for tid, counts in labels.items():
        who = max(counts, key=counts.get)  # a track is one person's when most of its labelled frames are
        t = plan.track(tid)
        on = {int(f) for f, b in zip(t.frames, t.xyxy) if f < len(truth) and any(
            x["who"] == who and iou_matrix(np.array([x["box"]], np.float32), b[None])[0, 0] >= 0.3
            for x in truth[int(f)])}
        frames_in.setdefault(who, {}).setdefault(person_of[tid], set()).update(on)
    for k, g in enumerate(groups):
        people = {max(labels[t], key=labels[t].get) for t in g if t in labels}
        assert len(people) <= 1, f"group {k + 1} (tracks {g}) mixes {sorted(people)}"
    purity = {}
    for who, by_group in frames_in.items():
        tracked = set().union(*by_group.values())
        purity[who] = max(len(f) for f in by_group.values()) / len(tracked)
        assert purity[who] >= 0.9, (who, {g: len(f) for g, f in by_group.items()})
    assert set(frames_in) == {"lin", "alex", "obama", "michelle", "aud_a", "aud_b"}
    print("grouping:", len(groups), "groups;", {w: round(p, 3) for w, p in purity.items()})


@pytest.mark.shared
def test_hamilton_person_saved_from_the_page_masks_them_with_target(hamilton, tmp_path: Path) -> None:
    clip, plan, truth, embedder = hamilton
    session = ReviewSession(plan, clip, save_path=tmp_path / "h.plan.json", output=tmp_path / "h.mp4",
                            people_dir=tmp_path / "people", embedder=embedder)
    session.prepare()
    server, thread = start(session)
    try:
        state = json.loads(_get(server, "/api/state")[1])
        labels = _label_tracks(plan, truth)
        lin_tracks = {t for t, c in labels.items() if max(c, key=c.get) == "lin"}
        person = max(range(len(state["people"])), key=lambda k: len(lin_tracks & set(state["people"][k])))
        status, answer = _post(server, "/api/person/save", {"person": person, "name": "lin_from_page"})
        assert status == 200, answer
    finally:
        stop(server, thread)
    gallery = Path(answer["path"])
    assert gallery == tmp_path / "people" / "lin_from_page.npz"
    from blurface.cli import main

    out = tmp_path / "lin_masked.mp4"
    assert main([str(clip), "--target", str(gallery), "-o", str(out), "-q"]) == 0
    acc = score(clip, out, truth, ["lin"])
    assert acc.target_visible == 149
    assert len(acc.leaked_frames) <= 3, acc.summary()
    # The page's person is Lin, not the audience: Obama and Michelle stay visible.
    assert acc.masked.get("obama", 0) == 0 and acc.masked.get("michelle", 0) == 0, acc.summary()


@pytest.mark.shared
def test_hamilton_hand_box_on_an_audience_face_follows_it_over_the_shot(hamilton, tmp_path: Path) -> None:
    clip, plan, truth, _ = hamilton
    plan = plan.as_saved()
    plan.tracks = [t for t in plan.tracks if t.last < 211]  # as if the audience had been missed
    session = ReviewSession(plan, clip, save_path=tmp_path / "h.plan.json", output=tmp_path / "h.mp4",
                            people_dir=tmp_path / "people")
    server, thread = start(session)
    try:
        box = next(f["box"] for f in truth[240] if f["who"] == "aud_a")
        status, answer = _post(server, "/api/box", {"frame": 240, "box": box, "reason": "missed by the detector"})
        assert status == 200, answer
    finally:
        stop(server, thread)
    track = plan.track(answer["track"])
    assert track.masked and track.decision == "manual"
    shot = [f for f in range(211, 275) if any(x["who"] == "aud_a" for x in truth[f])]
    covered = 0
    for f in shot:
        truth_box = next(x["box"] for x in truth[f] if x["who"] == "aud_a")
        row = np.flatnonzero(track.frames == f)
        if len(row) and iou_matrix(np.array([truth_box], np.float32), track.xyxy[row])[0, 0] >= 0.5:
            covered += 1
    assert covered >= 0.8 * len(shot), (covered, len(shot))
    assert track.first >= 211, "followed across the scene cut into another shot"
    print(f"hand box: frames {track.first}-{track.last}, covers aud_a in {covered}/{len(shot)} frames")


# --------------------------------------------------------------------------- hostile input


def _handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name and t.is_alive()]


def _wait_for_handlers(most: int = 0) -> None:
    """Wait (bounded) until at most ``most`` request threads are alive: what they print is then printed."""
    for _ in range(400):
        if len(_handler_threads()) <= most:
            return
        time.sleep(0.05)


def _raw(server, request: bytes, *, timeout: float = 20.0) -> bytes:
    """Send raw bytes, read the answer until the server closes (every test request says Connection: close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _post_raw(server, path: str, body: bytes, *, length: str | None = None, extra: str = "") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Blurface-Token: {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n"
            f"{extra}Connection: close\r\n\r\n")
    return _raw(server, head.encode() + body)


def _masked(server) -> dict[int, bool]:
    return {t["id"]: t["masked"] for t in json.loads(_get(server, "/api/state")[1])["tracks"]}


def test_malformed_requests_get_a_4xx_and_nothing_on_the_terminal(review, capfd) -> None:
    _, _, server = review
    before = _masked(server)
    host = f"Host: 127.0.0.1:{server.port}\r\nConnection: close\r\n"
    cases = {
        "5000-digit Range": (_raw(server, (f"GET /proxy.mp4?token={server.token} HTTP/1.1\r\n{host}"
                                           f"Range: bytes={'9' * 5000}-\r\n\r\n").encode()), 416),
        "two ranges": (_raw(server, (f"GET /proxy.mp4?token={server.token} HTTP/1.1\r\n{host}"
                                     "Range: bytes=0-1,5-9\r\n\r\n").encode()), 416),
        "70 KB path": (_raw(server, f"GET /{'a' * 70_000}?token={server.token} HTTP/1.1\r\n{host}\r\n".encode()), 414),
        "JSON 1e400": (_post_raw(server, "/api/track", b'{"id": 1e400, "masked": true}'), 400),
        "JSON NaN": (_post_raw(server, "/api/track", b'{"id": 0, "masked": true, "first": NaN}'), 400),
        "5000-digit id": (_post_raw(server, "/api/track", b'{"id": ' + b"9" * 5000 + b', "masked": true}'), 400),
        "deep nesting": (_post_raw(server, "/api/track", b"[" * 60_000), 400),
        "Content-Length abc": (_post_raw(server, "/api/save", b"{}", length="abc"), 400),
        "Content-Length -1": (_post_raw(server, "/api/save", b"{}", length="-1"), 400),
        "chunked": (_post_raw(server, "/api/save", b"2\r\n{}\r\n0\r\n\r\n", length="",
                              extra="Transfer-Encoding: chunked\r\n"), 411),
        "masked as text": (_post_raw(server, "/api/track", b'{"id": 1, "masked": "false"}'), 400),
        "id as text": (_post_raw(server, "/api/track", b'{"id": "1", "masked": true}'), 400),
        "id as bool": (_post_raw(server, "/api/track", b'{"id": true, "masked": true}'), 400),
        "negative frame": (_post_raw(server, "/api/track", b'{"id": 1, "masked": true, "first": -5}'), 400),
        "huge frame": (_post_raw(server, "/api/trim", b'{"id": 1, "first": 0, "last": 1e30}'), 400),
        "huge box": (_post_raw(server, "/api/box", b'{"frame": 5, "box": [-1e9, -1e9, 1e9, 1e9]}'), 400),
        "box of text": (_post_raw(server, "/api/box", b'{"frame": 5, "box": ["0", 0, 10, 10]}'), 400),
        "reason not text": (_post_raw(server, "/api/track", b'{"id": 1, "masked": true, "reason": {"a": 1}}'), 400),
    }
    for name, (answer, status) in cases.items():
        assert _status(answer) == status, (name, answer[:300])
        assert answer.rstrip().endswith(b"}"), (name, answer[-200:])  # one JSON line: {"error": ...}
    _wait_for_handlers()
    # Nothing changed, the server still answers, and the terminal shows no traceback.
    assert _masked(server) == before
    assert _get(server, "/api/state")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[-2000:]


def test_a_client_that_goes_away_prints_nothing(review, capfd) -> None:
    _, _, server = review
    for path in ("/api/state", "/proxy.mp4"):
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            s.sendall(f"GET {path}?token={server.token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            # A reset, as a browser that seeks or closes the tab: the server's next read or write fails.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    _wait_for_handlers()
    assert _get(server, "/api/state")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[-2000:]


@pytest.mark.parametrize("server_options", [{"max_connections": 4, "request_timeout": 60.0}])
def test_idle_connections_hold_at_most_max_connections_threads(review, server_options, capfd) -> None:
    _, _, server = review
    _wait_for_handlers()
    idle, refused = [], 0
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            idle.append(s)
        for s in idle[4:]:
            answer = s.recv(1000)
            refused += answer.startswith(b"HTTP/1.1 503")
        assert refused == 36, "every connection past the 4th is answered at once"
        assert len(_handler_threads()) <= 4
    finally:
        for s in idle:
            s.close()
    _wait_for_handlers()
    assert _get(server, "/api/state")[0] == 200, "closed connections give their slots back"
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("server_options", [{"request_timeout": 0.5}])
def test_a_silent_connection_is_closed(review, server_options) -> None:
    _, _, server = review
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"GET /api/state HTT")  # and then nothing
        assert s.recv(1000) == b"", "the server closes a socket that stops sending"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall((f"POST /api/save HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Blurface-Token: {server.token}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())  # 99 bytes short
        assert s.recv(1000) == b""


def test_the_page_sets_no_cookie_and_its_media_load_with_the_token_in_the_query(review) -> None:
    _, _, server = review
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("GET", f"/?token={server.token}")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    # A cookie for 127.0.0.1 is sent to every port on it, and two reviews would share its name.
    assert response.getheader("Set-Cookie") is None
    csp = response.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    conn.close()
    assert _get(server, "/proxy.mp4", headers={"Range": "bytes=0-9"})[0] == 206
    assert _get(server, "/thumb/0-0.jpg")[1][:2] == b"\xff\xd8"
    assert _get(server, "/proxy.mp4", token=False)[0] == 403


def test_review_of_a_hostile_plan_is_refused_with_one_line(review, tmp_path: Path, capsys, monkeypatch) -> None:
    from blurface import server
    from blurface.cli import main

    def served(self) -> None:  # noqa: ANN001
        raise AssertionError("the hostile plan was served")  # fail, not hang, where the plan is accepted

    monkeypatch.setattr(server.ReviewServer, "serve_forever", served)

    clip, plan_path, _ = review
    data = json.loads(plan_path.read_text())
    data["tracks"][0]["decision"] = (
        "<img src=x onerror=\"fetch('/api/track',{method:'POST',headers:{'X-Blurface-Token':TOKEN,"
        "'Content-Type':'application/json'},body:'{\\\"id\\\":0,\\\"masked\\\":false}'})\">")
    hostile = tmp_path / "hostile.plan.json"
    hostile.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["review", str(clip.path), "--plan", str(hostile), "-q", "-o", str(tmp_path / "x.mp4")]) == 2
    out, err = capsys.readouterr()
    assert "open http" not in out, "no page is served"
    assert len(err.strip().splitlines()) == 1 and "tracks[0].decision" in err and "use one of target" in err, err
    assert hostile.read_text() == json.dumps(data)


def test_review_on_a_busy_port_fails_at_once_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from blurface import pipeline
    from blurface.cli import main

    clip = make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=6, width=192, height=108, face_px=40)

    def analysed(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("the video was analysed before the port was checked")

    monkeypatch.setattr(pipeline, "make_plan", analysed)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["review", str(clip.path), "--all", "--port", str(port), "-q", "-o", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and f"--port {port}" in err and "in use" in err and "unexpected" not in err, err
    assert not (tmp_path / "x.mp4").exists()
