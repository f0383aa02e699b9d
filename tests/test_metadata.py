"""Identifying metadata: dropped by default, kept with --keep-metadata, reported by ``blurface inspect``.

The inputs are written here with PyAV the way phones and editors tag files: a GPS
position, camera make and model, dates, names and titles at container level and
on each stream, chapter titles, and a 90-degree display rotation.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import make_clip, make_image, marker_corner, packet_bytes

from blurface import media, metadata
from blurface.cli import main
from blurface.media.common import STALE_TAGS
from blurface.metadata import FileTags, Finding, StreamTags

# Distinctive values, so the output's raw bytes can be searched for them.
CONTAINER_TAGS = {
    "title": "Secret interview with a source",
    "comment": "filmed in the back room",
    "artist": "Jane Roe",
    "author": "Jane Roe",
    "copyright": "Roe Films",
    "creation_time": "2024-05-01T10:11:12.000000Z",
    "location": "+48.8577+002.2950/",
    "make": "Apple",
    "model": "iPhone 15 Pro Max",
    "com.apple.quicktime.location.ISO6709": "+48.8577+002.2950+035.000/",
    "com.apple.quicktime.make": "Apple",
    "com.apple.quicktime.model": "iPhone 15 Pro Max",
    "com.apple.quicktime.software": "17.4.1",
    "com.apple.quicktime.creationdate": "2024-05-01T12:11:12+0200",
    "serial_number": "C39XK123QQ",
}
STREAM_TAGS = {
    "title": "Back room camera",
    "handler_name": "Core Media Video",
    "creation_time": "2024-05-01T10:11:12.000000Z",
    "comment": "lens 2",
}
CHAPTER_TITLES = ("Arrival at the safe house", "The handover")
SECRETS = (
    "Secret interview", "back room", "Jane Roe", "Roe Films", "+48.8577", "iPhone 15 Pro Max",
    "17.4.1", "C39XK123QQ", "Back room camera", "Core Media", "lens 2", "safe house", "The handover",
)
# Keys that must not survive, compared in lower case.
IDENTIFYING_KEYS = {k.lower() for k in CONTAINER_TAGS} | {"title", "name", "comment", "creation_time", "location-eng"}

WIDTH, HEIGHT, FRAMES = 96, 64, 12
FPS = 24


def make_tagged(path: Path, rotation: int = 90) -> Path:
    """A clip tagged like a phone's, with chapters, AAC audio and a clockwise ``rotation``."""
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}[path.suffix]
    # Phones store QuickTime tags as reverse-DNS "mdta" keys; this flag makes FFmpeg do the same.
    options = {"movflags": "use_metadata_tags"} if fmt != "matroska" else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        out.metadata.update(CONTAINER_TAGS)
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "ultrafast"}
        video.metadata.update({**STREAM_TAGS, "language": "eng"})
        video.set_display_rotation(-rotation)  # PyAV counts counter-clockwise
        audio = out.add_stream("aac", rate=48000, layout="mono")
        audio.metadata.update({**STREAM_TAGS, "handler_name": "Core Media Audio", "language": "fra"})
        half = FRAMES // 2
        out.set_chapters(
            [
                {"id": i + 1, "start": i * half, "end": (i + 1) * half, "time_base": Fraction(1, FPS),
                 "metadata": {"title": title}}
                for i, title in enumerate(CHAPTER_TITLES)
            ]
        )
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(make_image(i, WIDTH, HEIGHT), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples = 48000 * FRAMES // FPS
        for start in range(0, samples, 1024):
            t = np.arange(start, start + 1024) / 48000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    return path


def all_tags(path: Path) -> dict[str, dict[str, str]]:
    """Every tag PyAV reads: ``{"": container tags, "#i": stream i's tags}``."""
    with av.open(str(path)) as container:
        tags = {"": dict(container.metadata)}
        tags.update({f"#{s.index}": dict(s.metadata) for s in container.streams})
    return tags


def chapters(path: Path) -> list[tuple[float, str]]:
    with av.open(str(path)) as container:
        return [(float(c["start"] * c["time_base"]), c["metadata"].get("title", "")) for c in container.chapters()]


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- the default: drop


@pytest.mark.parametrize("ext", [".mov", ".mp4", ".mkv"])
def test_masking_drops_identifying_metadata_and_keeps_what_players_need(ext, tmp_path, capsys):
    src = make_tagged(tmp_path / f"phone{ext}")
    before = all_tags(src)
    assert "location" in {k.lower() for k in before[""]} and "model" in {k.lower() for k in before[""]}
    dst, plan = tmp_path / f"out{ext}", tmp_path / "plan.json"

    code, _, lines = run(capsys, src, "--all", "-q", "-o", dst, "--plan", plan)

    assert code == 0, lines
    # One line, keys only: no value of any tag is repeated on stderr.
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("blurface: warning: dropped ") and line.endswith("; --keep-metadata keeps them")
    for key in ("location", "make", "model", "creation_time", "title", "comment", "2 chapter titles"):
        assert key in line.lower(), (key, line)
    assert not [s for s in SECRETS if s in line]

    # No identifying key is left anywhere (PyAV's view), and no value in the file's bytes.
    after = all_tags(dst)
    left = {(where, k) for where, tags in after.items() for k in tags if k.lower() in IDENTIFYING_KEYS}
    assert left == set(), after
    assert not [s for s in SECRETS if s.encode() in dst.read_bytes()]
    assert metadata.findings(media.read_tags(dst)) == []

    # What players need stays: languages, chapter times, the picture upright, audio bit-exact.
    assert [s.language for s in media.probe(dst).streams] == ["eng", "fra"]
    assert [t for t, _ in chapters(dst)] == pytest.approx([t for t, _ in chapters(src)], abs=0.001)
    assert [title for _, title in chapters(dst)] == ["", ""]
    info = media.probe(dst)
    assert (info.width, info.height, info.rotation) == (HEIGHT, WIDTH, 0)
    first_in = next(media.iter_frames(media.probe(src))).image
    with av.open(str(dst)) as container:
        first_out = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert marker_corner(first_in) == marker_corner(first_out) == "tr"
    assert packet_bytes(dst, "audio") == packet_bytes(src, "audio")

    # The plan lists the dropped keys, never their values.
    dropped = json.loads(plan.read_text())["metadata_dropped"]
    assert {"location", "stream #1 handler_name", "chapter 1 title"} <= {d.lower() for d in dropped}
    assert not [s for s in SECRETS if s in plan.read_text()]
    assert all_tags(src) == before, "the input is never changed"


@pytest.mark.parametrize("ext", [".mov", ".mp4", ".mkv"])
def test_keep_metadata_keeps_every_tag_and_chapter_title(ext, tmp_path, capsys):
    src = make_tagged(tmp_path / f"phone{ext}")
    dst = tmp_path / f"out{ext}"

    code, _, lines = run(capsys, src, "--all", "-q", "--keep-metadata", "-o", dst)

    assert code == 0 and lines == []
    before, after = all_tags(src), all_tags(dst)
    # Tags that describe the old encode (encoder, durations, brands) are written afresh, as before.
    stale = STALE_TAGS | {"name", "title"}
    for where, tags in before.items():
        for key, value in tags.items():
            if key.lower() in stale and where:
                continue
            if key.lower() == "encoder" and value.startswith("Lavf"):
                continue  # FFmpeg's own version tag: renders are bit-exact, so it is left out
            assert after[where].get(key) == value, (where, key, after[where])
    # A stream's title survives too (QuickTime reads it back as "name").
    for where in ("#0", "#1"):
        titles = {after[where].get(k) for k in ("title", "name", "TITLE")}
        assert STREAM_TAGS["title"] in titles, after[where]
    assert [title for _, title in chapters(dst)] == list(CHAPTER_TITLES)
    assert [t for t, _ in chapters(dst)] == pytest.approx([t for t, _ in chapters(src)], abs=0.001)
    assert packet_bytes(dst, "audio") == packet_bytes(src, "audio")


@pytest.mark.parametrize("name", ["plain.mp4", "plain.mkv"])
def test_a_file_with_nothing_to_drop_prints_no_line(name, tmp_path, capsys):
    # FFmpeg's own tags (encoder "Lavf...", handler "VideoHandler") and languages are not identifying.
    src = make_clip(tmp_path / name, n_frames=6, audio=("aac",), languages=("eng",))
    code, _, lines = run(capsys, src, "--all", "-q", "-o", tmp_path / f"out.{name}")
    assert code == 0 and lines == []
    code, out, lines = run(capsys, "inspect", src)
    assert code == 0 and out == f"{src}: CLEAN\n" and lines == []


def test_data_streams_and_attachments_other_than_fonts_are_dropped(tmp_path):
    # A timecode track holds the time of day it was filmed; camera data tracks hold GPS tracks.
    timecode = make_clip(tmp_path / "tc.mov", n_frames=6, timecode="14:31:07:00", audio=("aac",))
    warnings = media.transcode(media.probe(timecode), tmp_path / "tc_out.mov", lambda f: f.image)
    assert warnings == ["dropped 1 metadata tag: timecode; data stream #2; --keep-metadata keeps them"]
    assert [s.kind for s in media.probe(tmp_path / "tc_out.mov").streams] == ["video", "audio"]
    assert b"14:31" not in (tmp_path / "tc_out.mov").read_bytes()

    plain = make_clip(tmp_path / "plain.mkv", n_frames=6, subtitles=True)
    src = tmp_path / "attached.mkv"
    with av.open(str(plain)) as inp, av.open(str(src), "w") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.add_attachment("DejaVuSans.ttf", "application/x-truetype-font", TTF + b"\0" * 56)
        out.add_attachment("notes.txt", "text/plain", b"met J. at the station")
        out.add_attachment("cover.jpg", "image/jpeg", b"\xff\xd8 a picture of someone")
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    dst = tmp_path / "attached_out.mkv"
    warnings = media.transcode(media.probe(src), dst, lambda f: f.image)
    # The demuxer shows an image attachment as a cover picture, which has its own warning line.
    assert warnings == [
        "video stream #4 (mjpeg, cover.jpg) was left out: only the first video stream is masked, "
        "and copying others would leak faces",
        "dropped attachment stream #3; --keep-metadata keeps them",
    ]
    assert b"met J." not in dst.read_bytes()
    with av.open(str(dst)) as container:
        kept = [dict(s.metadata) for s in container.streams if s.type == "attachment"]
    assert kept == [{"filename": "DejaVuSans.ttf", "mimetype": "application/x-truetype-font"}]


def test_blur_video_reports_dropped_keys_on_the_result(tmp_path):
    from blurface.pipeline import RenderSettings, blur_video

    src = make_tagged(tmp_path / "phone.mp4", rotation=0)
    result = blur_video(src, tmp_path / "out.mp4", all_faces=True)
    assert "com.apple.quicktime.location.ISO6709" in result.metadata_dropped
    assert "chapter 2 title" in result.metadata_dropped
    assert [w for w in result.warnings if w.startswith("dropped ")] != []
    assert not [s for s in SECRETS if s in json.dumps(result.metadata_dropped)]

    keep = RenderSettings(encode=media.EncodeSettings(keep_metadata=True))
    kept = blur_video(src, tmp_path / "kept.mp4", all_faces=True, render_settings=keep)
    assert kept.metadata_dropped == [] and not [w for w in kept.warnings if w.startswith("dropped ")]
    assert all_tags(tmp_path / "kept.mp4")[""]["com.apple.quicktime.model"] == "iPhone 15 Pro Max"


# --------------------------------------------------------------------------- inspect


def test_inspect_lists_identifying_keys_and_exits_1(tmp_path, capsys):
    src = make_tagged(tmp_path / "phone.mov")
    code, out, lines = run(capsys, "inspect", src)
    assert code == 1 and lines == []
    listed = out.splitlines()
    assert f"{src}: com.apple.quicktime.location.ISO6709" in listed
    assert f"{src}: stream #1 handler_name" in listed and f"{src}: chapter 2 title" in listed
    assert listed[-1].startswith(f"{src}: IDENTIFYING METADATA: ")
    assert not [s for s in SECRETS if s in out], "keys only, never values"
    code, out, _ = run(capsys, "inspect", "-q", src)
    assert code == 1 and out == f"{listed[-1]}\n"


def test_inspect_several_files_and_bad_input(tmp_path, capsys):
    tagged = make_tagged(tmp_path / "phone.mkv")
    clean = tmp_path / "clean.mkv"
    assert main([str(tagged), "--all", "-q", "-o", str(clean)]) == 0
    capsys.readouterr()

    code, out, lines = run(capsys, "inspect", clean)
    assert code == 0 and out == f"{clean}: CLEAN\n"

    image = tmp_path / "still.png"
    import cv2

    cv2.imwrite(str(image), make_image(0, 32, 32))
    code, out, lines = run(capsys, "inspect", clean, tmp_path / "missing.mp4", image, tagged)
    assert code == 2, "an unreadable file means the check is incomplete"
    assert lines == [
        f"blurface: error: {tmp_path / 'missing.mp4'}: no such file: check the path",
        f"blurface: error: {image}: is a still image: 'blurface inspect' checks video files "
        "(use an EXIF tool for pictures)",
    ]
    assert f"{clean}: CLEAN" in out and f"{tagged}: IDENTIFYING METADATA" in out

    code, _, lines = run(capsys, "inspect")
    assert code == 2 and "the following arguments are required" in lines[0]


# --------------------------------------------------------------------------- the rule itself


def test_ffmpeg_own_tags_are_not_identifying_but_a_camera_s_are():
    video = StreamTags(0, "video", {"handler_name": "VideoHandler", "vendor_id": "FFMP", "language": "eng",
                                    "encoder": "Lavc62.28.102 libx264"})
    phone = StreamTags(1, "audio", {"handler_name": "Core Media Audio", "encoder": "iPhone audio"})
    meta = FileTags("x.mov", {"major_brand": "qt  ", "encoder": "Lavf62.12.102", "Make": "Apple"}, (video, phone))
    assert [str(f) for f in metadata.findings(meta)] == ["Make", "stream #1 handler_name", "stream #1 encoder"]
    assert metadata.kept_stream_tags(video) == {"language": "eng"}


def test_summary_names_each_key_once_in_any_case():
    a, b = StreamTags(0, "video", {}), StreamTags(1, "data", {})
    found = [Finding("LOCATION"), Finding("location", a), Finding("make"), Finding("title", chapter=1),
             Finding(None, b)]
    assert metadata.summary(found) == (
        "dropped 2 metadata tags: LOCATION, make; 1 chapter title; data stream #1; --keep-metadata keeps them"
    )
    assert metadata.summary([]) is None


TTF = b"\x00\x01\x00\x00\x00\x0f\x00\x80"  # the start of a TrueType file: version 1.0, 15 tables


@pytest.mark.parametrize(
    ("tags", "head", "font"),
    [
        ({"filename": "a.ttf", "mimetype": "application/x-truetype-font"}, TTF, True),
        ({"filename": "a.otf", "mimetype": "application/vnd.ms-opentype"}, b"OTTO\x00\x0b", True),
        ({"filename": "A.TTF", "mimetype": "application/octet-stream"}, TTF, True),
        ({"filename": "b.woff2", "mimetype": "font/woff2"}, b"wOF2\x00\x01", True),
        ({"filename": "c.ttc", "mimetype": "font/collection"}, b"ttcf\x00\x02", True),
        ({"filename": "cover.jpg", "mimetype": "image/jpeg"}, b"\xff\xd8\xff\xe0", False),
        ({"filename": "notes.txt", "mimetype": "text/plain"}, b"met J.", False),
        # The label is not the content (issue #21): text named and labelled as a font is no font.
        ({"filename": "gps.ttf", "mimetype": "application/x-truetype-font"}, b"GPS 51.5", False),
        ({"filename": "empty.ttf", "mimetype": "font/ttf"}, b"", False),
    ],
)
def test_only_font_attachments_are_kept(tags, head, font):
    stream = StreamTags(2, "attachment", tags, head=head)
    assert metadata.keeps_stream(stream) is font
    assert metadata.kept_stream_tags(stream) == (tags if font else {})


def test_render_subcommand_drops_or_keeps_metadata_too(tmp_path, capsys):
    src = make_tagged(tmp_path / "phone.mkv", rotation=0)
    plan = tmp_path / "plan.json"
    assert main([str(src), "--all", "-q", "--keep-metadata", "-o", str(tmp_path / "a.mkv"), "--plan", str(plan)]) == 0
    assert json.loads(plan.read_text())["metadata_dropped"] == []
    capsys.readouterr()

    code, _, lines = run(capsys, "render", src, "--plan", plan, "-q", "-o", tmp_path / "b.mkv")
    assert code == 0 and len(lines) == 1 and "dropped " in lines[0]
    assert metadata.findings(media.read_tags(tmp_path / "b.mkv")) == []

    code, _, lines = run(capsys, "render", src, "--plan", plan, "-q", "--keep-metadata", "-o", tmp_path / "c.mkv")
    assert code == 0 and lines == []
    assert all_tags(tmp_path / "c.mkv")[""]["MODEL"] == "iPhone 15 Pro Max"


def test_an_attachment_labelled_as_a_font_is_kept_only_if_it_is_one(tmp_path, capsys):
    """Issue #21: ``gps.ttf``, labelled a TrueType font, holding text with a position and a name."""
    plain = make_clip(tmp_path / "plain.mkv", n_frames=6)
    src = tmp_path / "labelled.mkv"
    secret = b"GPS 51.50735,-0.12776 filmed by Jane Roe"
    with av.open(str(plain)) as inp, av.open(str(src), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        out.add_attachment("gps.ttf", "application/x-truetype-font", secret)
        out.add_attachment("DejaVuSans.ttf", "application/x-truetype-font", TTF + b"\0" * 56)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
    code, out, _ = run(capsys, "inspect", src)
    assert code == 1 and "attachment stream #1" in out and "attachment stream #2" not in out
    dst = tmp_path / "out.mkv"
    code, _, lines = run(capsys, src, "--all", "-q", "-o", dst)
    assert code == 0 and lines == ["blurface: warning: dropped attachment stream #1; --keep-metadata keeps them"]
    assert b"Jane Roe" not in dst.read_bytes() and b"51.507" not in dst.read_bytes()
    with av.open(str(dst)) as container:
        kept = [(s.metadata.get("filename"), bytes(s.data[:4])) for s in container.streams if s.type == "attachment"]
    assert kept == [("DejaVuSans.ttf", TTF[:4])]
