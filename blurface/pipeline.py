"""analyse(src) -> Plan and render(plan, dst) -> Result: the only module that composes stages.

Analysis decodes once at a small scale, detects on some frames in worker threads
(dlib's HOG releases the GIL), links detections into tracks, embeds a few good
crops per track and decides each track's identity from all of them. Rendering
decodes again at full size, masks what the plan says and encodes, so memory does
not grow with the video's length.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import media
from .faces import HOG_MIN_FACE_PX, FaceEngine, sharpness
from .gallery import Gallery
from .mask import DEFAULT_PAD, EFFECTS, Masker
from .plan import DecisionSettings, Plan, decide, exclude_simultaneous, track_distance
from .track import FaceTracker, SceneCutDetector, extend_track
from .types import SOURCE_DETECTED, DecodedFrame, Faces, InputError, Mode, Result, Track, VideoInfo

log = logging.getLogger(__name__)

# Called with the stage ("analyse" or "render") and the number of frames just done.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of the analysis pass. All are keyword-only in :func:`analyse`'s callers.

    Attributes:
        min_face: smallest face to find: a fraction of the frame height when < 1, else pixels.
            Lower finds smaller faces; detection cost grows with 1/min_face squared.
        detect_every: run the detector on every k-th frame (more often while a track is
            uncertain or after a cut). Lower is safer and slower.
        threshold: HOG score threshold; lower finds more (turned, blurred) faces and more
            false positives.
        cnn_every: also run the CNN detector every this many frames and on each cut
            (0 = never). It finds turned and dim faces HOG cannot, at ~60x HOG's cost.
        cnn_min_face: smallest face, in pixels, the CNN sweeps must find.
        crops_per_track: face crops embedded per track to decide its identity.
        max_gap_seconds: a lost track that reappears within this time is the same track,
            and the frames between are masked at interpolated positions.
        extend_seconds: mask this long before a track's first and after its last detection
            (within its shot), for faces the detector found late or lost early.
        threads: detector threads.
        embed_process: embed face crops in a worker process (uses a second core while
            the main thread decodes); off, they are embedded in the main thread.
    """

    min_face: float = 1 / 9
    detect_every: int = 3
    threshold: float = -0.2
    cnn_every: int = 0
    cnn_min_face: int = 80
    crops_per_track: int = 5
    max_gap_seconds: float = 1.0
    extend_seconds: float = 0.2
    threads: int = 2
    embed_process: bool = True


PRESETS: dict[str, AnalysisSettings] = {
    "fast": AnalysisSettings(min_face=1 / 7, detect_every=4, crops_per_track=3),
    "balanced": AnalysisSettings(),
    "thorough": AnalysisSettings(min_face=1 / 12, detect_every=1, threshold=-0.4, cnn_every=8, crops_per_track=8),
}


@dataclass(frozen=True)
class RenderSettings:
    """How masks look and how the output is encoded."""

    effect: str = "blur"
    shape: str = "ellipse"
    pad: float = DEFAULT_PAD
    encode: media.EncodeSettings = field(default_factory=media.EncodeSettings)

    def masker(self) -> Masker:
        if self.effect not in EFFECTS:
            raise InputError(f"unknown mask effect {self.effect!r}: use one of {', '.join(EFFECTS)}")
        return Masker(EFFECTS[self.effect](), shape=self.shape, pad=self.pad)  # type: ignore[arg-type]


def min_face_px(settings: AnalysisSettings, frame_height: int) -> float:
    return settings.min_face * frame_height if settings.min_face < 1 else float(settings.min_face)


def detection_scale(settings: AnalysisSettings, width: int, height: int) -> float:
    """Scale at which the smallest wanted face is HOG's smallest findable face.

    Capped at 2x (upscaling further invents no detail) and at a frame no smaller than 64 px.
    """
    scale = HOG_MIN_FACE_PX / max(1.0, min_face_px(settings, height))
    scale = min(scale, 2.0)
    return max(scale, 64 / max(1, min(width, height)))


class _CropBuffer:
    """The best few face crops of one live track, at full resolution, spread in time.

    Bounded: at most ``size`` crops, each a face plus margin, so memory does not grow
    with the track's length.
    """

    def __init__(self, size: int, min_separation: int = 3) -> None:
        self.size = size
        self.min_separation = min_separation
        self.items: list[tuple[float, int, np.ndarray, np.ndarray]] = []  # quality, frame, crop, box-in-crop

    def wants(self, quality: float, frame: int) -> bool:
        for q, f, _, _ in self.items:
            if abs(f - frame) < self.min_separation:
                return quality > q
        return len(self.items) < self.size or quality > min(q for q, *_ in self.items)

    def add(self, quality: float, frame: int, crop: np.ndarray, box: np.ndarray) -> None:
        self.items = [it for it in self.items if abs(it[1] - frame) >= self.min_separation]
        self.items.append((quality, frame, crop, box))
        self.items.sort(key=lambda it: -it[0])
        del self.items[self.size :]


def _crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face plus half its size of margin (the landmark model looks outside the box)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * 0.5, (y2 - y1) * 0.5
    cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    cx2, cy2 = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    return crop, np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32)


def _frames_to_leave(track: Track, width: int, height: int, *, at_end: bool) -> int:
    """Frames until a track's end box, moving as its last detections did, is fully out of frame.

    ``at_end=False`` looks backwards from the first detection (a face that entered).
    0 when the face is not moving towards an edge it is near.
    """
    detected = np.flatnonzero(track.source == SOURCE_DETECTED)
    if len(detected) < 2:
        return 0
    i1, i0 = (detected[-1], detected[-2]) if at_end else (detected[0], detected[1])
    span = abs(float(track.frames[i1] - track.frames[i0]))
    if span == 0:
        return 0
    box, prev = track.xyxy[i1], track.xyxy[i0]
    vx = ((box[0] + box[2]) - (prev[0] + prev[2])) / 2 / span  # pixels per frame, outward in time
    vy = ((box[1] + box[3]) - (prev[1] + prev[3])) / 2 / span
    w, h = box[2] - box[0], box[3] - box[1]
    steps = []
    if vx > 0 and box[2] > width - w:
        steps.append((width - box[0]) / vx)
    if vx < 0 and box[0] < w:
        steps.append(box[2] / -vx)
    if vy > 0 and box[3] > height - h:
        steps.append((height - box[1]) / vy)
    if vy < 0 and box[1] < h:
        steps.append(box[3] / -vy)
    return int(np.ceil(min(steps))) + 1 if steps else 0


def _merge(hog: Faces, cnn: Faces) -> Faces:
    """HOG detections plus the CNN ones that no HOG box overlaps."""
    if len(cnn) == 0:
        return hog
    keep = []
    for i, b in enumerate(cnn.xyxy):
        overlap = False
        for h in hog.xyxy:
            ix = max(0.0, min(b[2], h[2]) - max(b[0], h[0]))
            iy = max(0.0, min(b[3], h[3]) - max(b[1], h[1]))
            if ix * iy > 0.3 * min((b[2] - b[0]) * (b[3] - b[1]), (h[2] - h[0]) * (h[3] - h[1])):
                overlap = True
                break
        if not overlap:
            keep.append(i)
    return Faces.concat([hog, cnn[np.array(keep, np.int64)]]) if keep else hog


_worker_engine: FaceEngine | None = None


def _worker_init() -> None:
    """In the embedding process: load the models once; Ctrl-C is the parent's to handle."""
    global _worker_engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_engine = FaceEngine()


def _embed_until_clear(
    items: list[tuple[np.ndarray, np.ndarray]],
    prior: np.ndarray,
    people: Gallery,
    low: float,
    high: float,
    engine: FaceEngine | None = None,
) -> np.ndarray:
    """Embed crops best-first until the track's distance to the nearest person is clear.

    Args:
        items: ``(crop BGR, box in crop)`` pairs, best quality first.
        prior: ``(m, 128)`` embeddings the track already has (from the tracker).
        people: the relevant people; distances are the decision's own (``Gallery.distances``).
        low, high: the decision is clear below ``low`` or above ``high``.

    Returns:
        ``(k, 128)`` float32 embeddings of the first ``k`` crops.
    """
    engine = engine or _worker_engine
    assert engine is not None
    out: list[np.ndarray] = []
    for crop, box in items:
        out.append(engine.embed(crop, box[None])[0])
        evidence = np.concatenate([prior.reshape(-1, 128), np.stack(out)])
        if len(evidence) >= 2 and len(people):
            d = people.distances(evidence)
            best = min(track_distance(d[:, j]) for j in range(d.shape[1]))
            if best <= low or best > high:
                break
    return np.stack(out).astype(np.float32)


class _EmbedProcess:
    """One worker process for embeddings.

    dlib's ``compute_face_descriptor`` holds the GIL for ~80 ms per face, which stalled
    decoding and tracking in the main thread (measured: half of the analysis time on a
    720p clip); in its own process it runs beside them on the second core.
    """

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), initializer=_worker_init)

    def submit(self, *args: object) -> Future:
        return self._pool.submit(_embed_until_clear, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Pending:
    frame: DecodedFrame  # holds the decoded frame, converted to full-size BGR only if needed
    future: Future


# A track's crops are embedded best-first until its decision is this far from every
# threshold: clear targets and clear strangers cost two embeddings, unsure ones all.
_CLEAR_MARGIN = 0.1


class Analyser:
    """One analysis of one video. Not reusable: make one per file (state lives here)."""

    def __init__(
        self,
        engine: FaceEngine,
        gallery: Gallery,
        decision: DecisionSettings,
        settings: AnalysisSettings,
    ) -> None:
        self.engine = engine
        self.gallery = gallery
        self.decision = decision
        self.settings = settings
        self.tracks: list[Track] = []
        self.cuts: list[int] = [0]
        self.embeddings_computed = 0
        self.detections_run = 0
        self._buffers: dict[int, _CropBuffer] = {}
        # (track, embedding job or result, the job's arguments for an in-process retry)
        self._decisions: deque[tuple[Track, Future | np.ndarray | None, tuple]] = deque()
        self._embedder: _EmbedProcess | None = None

    def run(self, src: str | os.PathLike, progress: Progress | None = None) -> Plan:
        info = media.probe(src)
        if self.settings.embed_process and self.decision.mode != "all":
            try:
                self._embedder = _EmbedProcess()
            except OSError as e:  # no process allowed here: same result, one core less
                log.warning("embedding in the main thread: cannot start a worker process (%s)", e)
        try:
            return self._run(info, progress)
        finally:
            if self._embedder is not None:
                self._embedder.close()

    def _run(self, info: VideoInfo, progress: Progress | None) -> Plan:
        s = self.settings
        scale = detection_scale(s, info.width, info.height)
        size = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))
        fps = float(info.fps) if info.fps else 30.0
        tracker = FaceTracker(max_gap=max(s.detect_every, round(s.max_gap_seconds * fps), s.cnn_every))
        cuts = SceneCutDetector()
        cnn_scale = min(1.0, 80 / max(1.0, min(s.cnn_min_face, min_face_px(s, info.height) * 2)))
        real_scale = size[0] / info.width
        times: list[float] = []
        pending: deque[_Pending] = deque()
        last_detect = -(10**9)
        last_cnn = -(10**9)
        # The tracker stays "uncertain" while a lost track may come back (up to max_gap);
        # detecting every frame that long would cost more than the gap fill saves.
        uncertain_run = 0
        uncertain_limit = 2 * max(2, s.detect_every)
        log.info(
            "analysing %s: %dx%d, %d frames, detecting at %dx%d every %d frames",
            info.path, info.width, info.height, info.frame_count, size[0], size[1], s.detect_every,
        )
        with ThreadPoolExecutor(max_workers=max(1, s.threads), thread_name_prefix="blurface-detect") as pool:
            for frame in media.iter_frames(info, size=size, fmt="gray"):
                i = frame.index
                times.append(frame.time)
                cut = cuts.update(frame.thumb if frame.thumb is not None else frame.image) and i > 0
                if cut:
                    # Results of frames before the cut must reach the tracker before it ends the shot.
                    while pending:
                        self._consume(pending.popleft(), tracker, real_scale)
                    tracker.cut(i)
                    self.cuts.append(i)
                uncertain = tracker.uncertain and uncertain_run < uncertain_limit
                due = cut or i - last_detect >= s.detect_every or (uncertain and i - last_detect >= 1)
                cnn_due = s.cnn_every > 0 and (cut or i == 0 or i - last_cnn >= s.cnn_every)
                if due or cnn_due:
                    uncertain_run = uncertain_run + 1 if tracker.uncertain else 0
                    last_detect = i
                    if cnn_due:
                        last_cnn = i
                    full = frame.full_image() if cnn_due else None
                    future = pool.submit(self._detect, frame.image, real_scale, full, cnn_scale, info)
                    pending.append(_Pending(frame=frame, future=future))
                    self.detections_run += 1
                # Bounded look-behind: at most two detections in flight per thread.
                while pending and (len(pending) > 2 * s.threads or pending[0].future.done()):
                    self._consume(pending.popleft(), tracker, real_scale)
                self._finish_tracks(tracker.pop_finished(i))
                self._collect_decisions(wait=False)
                if progress:
                    progress("analyse", 1)
            while pending:
                self._consume(pending.popleft(), tracker, real_scale)
        self._finish_tracks(tracker.finish())
        self._collect_decisions(wait=True)
        exclude_simultaneous(self.tracks, self.decision)
        frame_count = len(times)
        self._extend(frame_count, fps, info.width, info.height)
        self.tracks.sort(key=lambda t: (t.first, t.id))
        settings = {
            "analysis": asdict(s),
            "decision": asdict(self.decision),
            "detection_size": list(size),
            "gallery": self.gallery.names,
            "detections_run": self.detections_run,
            "embeddings_computed": self.embeddings_computed,
            "scene_cuts": self.cuts[1:],
        }
        return Plan(
            video=info, mode=self.decision.mode, settings=settings, tracks=self.tracks, times=np.asarray(times)
        )

    def _detect(
        self, small: np.ndarray, scale: float, full: np.ndarray | None, cnn_scale: float, info: VideoInfo
    ) -> Faces:
        faces = self.engine.detect_array(small, scale=scale)
        if full is not None:
            resized = full if cnn_scale == 1.0 else cv2.resize(full, None, fx=cnn_scale, fy=cnn_scale)
            cnn = self.engine.detect_cnn(resized, upsample=0)
            cnn.xyxy /= np.float32(cnn_scale)
            faces = _merge(faces, cnn)
        # HOG boxes may poke out of the frame; clip so crops and masks stay valid.
        faces.xyxy[:, [0, 2]] = faces.xyxy[:, [0, 2]].clip(0, info.width)
        faces.xyxy[:, [1, 3]] = faces.xyxy[:, [1, 3]].clip(0, info.height)
        keep = (faces.width >= 2) & (faces.height >= 2)
        return faces[keep]

    def _consume(self, item: _Pending, tracker: FaceTracker, scale: float) -> None:
        faces: Faces = item.future.result()
        frame = item.frame
        i = frame.index

        def embed(rows: np.ndarray) -> np.ndarray:
            self.embeddings_computed += len(rows)
            return self.engine.embed(frame.full_image(), faces.xyxy[rows])

        faces = tracker.update(i, faces, embed=embed if len(self.gallery) else None)
        if self.decision.mode == "all":
            return
        for row in range(len(faces)):
            box = faces.xyxy[row]
            tid = int(faces.track_id[row])
            buf = self._buffers.setdefault(tid, _CropBuffer(self.settings.crops_per_track))
            width = float(box[2] - box[0])
            # Bigger, sharper, surer faces give better embeddings. Sharpness is read from the
            # small analysis image: full-size frames are converted only for crops worth keeping.
            detail = sharpness(frame.image, box * scale)
            quality = min(width, 200.0) * math.sqrt(1.0 + detail) * (1.0 + max(0.0, float(faces.score[row])))
            if buf.wants(quality, i):
                crop, crop_box = _crop(frame.full_image(), box)
                buf.add(quality, i, crop, crop_box)

    def _finish_tracks(self, finished: list[Track]) -> None:
        """Start embedding each finished track's crops; it is decided once they are back."""
        relevant = [j for j, n in enumerate(self.gallery.names) if n in self.decision.people]
        people = Gallery([self.gallery.people[j] for j in relevant])
        low = self.decision.tolerance - _CLEAR_MARGIN
        high = self.decision.tolerance + self.decision.unsure_margin + _CLEAR_MARGIN
        for track in finished:
            buf = self._buffers.pop(track.id, None)
            job: Future | np.ndarray | None = None
            args: tuple = ()
            if self.decision.mode != "all" and buf is not None and buf.items and len(people):
                items = [(crop, box) for _, _, crop, box in buf.items]  # best quality first
                track.embedding_frames = np.concatenate(
                    [track.embedding_frames, np.array([f for _, f, _, _ in buf.items], np.int64)]
                )
                args = (items, track.embeddings, people, low, high)
                if self._embedder is not None:
                    try:
                        job = self._embedder.submit(*args)
                    except BrokenProcessPool:
                        job = _embed_until_clear(*args, self.engine)
                else:
                    job = _embed_until_clear(*args, self.engine)
            self._decisions.append((track, job, args))

    def _collect_decisions(self, *, wait: bool) -> None:
        """Decide tracks whose embeddings are back, in order; all of them when ``wait``."""
        while self._decisions:
            track, job, args = self._decisions[0]
            if isinstance(job, Future) and not wait and not job.done():
                return
            self._decisions.popleft()
            if job is not None:
                embs = self._result(job, args)
                self.embeddings_computed += len(embs)
                track.embeddings = np.concatenate([track.embeddings, embs])
                # Frames of crops that the early stop left unembedded are dropped.
                track.embedding_frames = track.embedding_frames[: len(track.embeddings)]
            dist = self.gallery.distances(track.embeddings) if len(self.gallery) else np.zeros((0, 0))
            decide(track, dist, self.gallery.names, self.decision)
            self.tracks.append(track)

    def _result(self, job: Future | np.ndarray, args: tuple) -> np.ndarray:
        if not isinstance(job, Future):
            return job
        try:
            return job.result()
        except BrokenProcessPool as e:
            # The worker died (killed, or a __main__ it cannot re-import): same work here.
            if self._embedder is not None:
                log.warning("embedding worker stopped (%s); embedding in the main thread", e)
                self._embedder.close()
                self._embedder = None
            return _embed_until_clear(*args, self.engine)

    def _extend(self, frame_count: int, fps: float, width: int, height: int) -> None:
        n = max(1, round(self.settings.extend_seconds * fps), self.settings.detect_every)
        gap = max(n, round(self.settings.max_gap_seconds * fps))
        bounds = self.cuts + [frame_count]
        extended = []
        for t in self.tracks:
            k = int(np.searchsorted(bounds, t.first, side="right")) - 1
            lo, hi = bounds[k], bounds[k + 1] - 1
            # A track lost less than a gap before its shot ends (or found less than a gap
            # after it starts) is a detector miss, not a face leaving: cover up to the cut.
            before = t.first - lo if t.first - lo <= gap else n
            after = hi - t.last if hi - t.last <= gap else n
            # A face leaving (or entering) through an edge is lost by the detector while
            # half of it still shows: cover it until its path has taken it out of frame.
            before = max(before, min(gap, _frames_to_leave(t, width, height, at_end=False)))
            after = max(after, min(gap, _frames_to_leave(t, width, height, at_end=True)))
            extended.append(extend_track(t, before=before, after=after, lo=lo, hi=hi))
        self.tracks = extended


def analyse(
    src: str | os.PathLike,
    *,
    gallery: Gallery,
    decision: DecisionSettings,
    settings: AnalysisSettings = AnalysisSettings(),
    engine: FaceEngine | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Find, track and identify every face of ``src``; decide which to mask.

    Raises:
        MediaError: ``src`` cannot be read completely.
    """
    engine = engine or FaceEngine(threshold=settings.threshold)
    return Analyser(engine, gallery, decision, settings).run(src, progress)


def render(
    plan: Plan,
    dst: str | os.PathLike,
    *,
    settings: RenderSettings = RenderSettings(),
    src: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Decode ``src`` (default: the plan's video) again, mask per ``plan`` and write ``dst``.

    Raises:
        InputError: the video is not the one the plan was made for.
        OutputError: ``dst`` exists (without ``overwrite``), is the input, or is not writable.
    """
    info = media.probe(src if src is not None else plan.video.path)
    if (info.width, info.height) != (plan.video.width, plan.video.height) or abs(
        info.frame_count - plan.frame_count
    ) > max(2, plan.frame_count // 50):
        raise InputError(
            f"{info.path!r} ({info.width}x{info.height}, {info.frame_count} frames) is not the video the plan "
            f"was made for ({plan.video.width}x{plan.video.height}, {plan.frame_count} frames): analyse it again"
        )
    masker = settings.masker()
    masks = plan.iter_masks()
    position = -1
    boxes = np.zeros((0, 4), np.float32)
    masked_frames = masked_boxes = 0

    def process(frame: DecodedFrame) -> tuple[np.ndarray, np.ndarray]:
        nonlocal position, boxes, masked_frames, masked_boxes
        while position < frame.index:
            boxes = next(masks, np.zeros((0, 4), np.float32))
            position += 1
        image = frame.image
        if len(boxes):
            masker.apply(image, boxes)
            masked_frames += 1
            masked_boxes += len(boxes)
        if progress:
            progress("render", 1)
        # Telling the encoder where the masks are spares it comparing whole frames.
        return image, masker.regions(boxes)

    started = time.perf_counter()
    warnings = media.transcode(
        info, dst, process, settings=settings.encode, overwrite=overwrite, reports_changes=True
    )
    return Result(
        output=str(dst),
        frames=position + 1,
        masked_frames=masked_frames,
        masked_boxes=masked_boxes,
        tracks=len(plan.tracks),
        masked_tracks=len(plan.masked_tracks),
        seconds_analyse=0.0,
        seconds_render=time.perf_counter() - started,
        warnings=list(plan.warnings) + list(warnings),
    )


def make_plan(
    src: str | os.PathLike,
    *,
    targets: list[str | os.PathLike] | Gallery | None = None,
    keep: list[str | os.PathLike] | Gallery | None = None,
    all_faces: bool = False,
    tolerance: float = DecisionSettings.tolerance,
    mask_unsure: bool = True,
    analysis: AnalysisSettings | str = "balanced",
    strict_reference: bool = False,
    progress: Progress | None = None,
) -> Plan:
    """Load the reference people and analyse ``src``: the plan :func:`blur_video` renders.

    The plan comes back as :meth:`Plan.save` writes it (boxes to 0.1 px), so a
    render of it and a later render of the saved file give the same bytes.

    Raises:
        InputError: bad combination of options, unusable video or reference.
    """
    chosen = [bool(targets), bool(keep), bool(all_faces)]
    if sum(chosen) != 1:
        raise InputError("give exactly one of targets, keep or all_faces")
    settings = PRESETS[analysis] if isinstance(analysis, str) else analysis
    engine = FaceEngine(threshold=settings.threshold)
    mode: Mode = "target" if targets else "keep" if keep else "all"
    refs = targets if targets else keep
    if isinstance(refs, Gallery):
        gallery = refs
    elif refs:
        gallery = Gallery.from_paths(list(refs), engine, strict=strict_reference)
    else:
        gallery = Gallery()
    decision = DecisionSettings(mode=mode, people=tuple(gallery.names), tolerance=tolerance, mask_unsure=mask_unsure)
    plan = analyse(src, gallery=gallery, decision=decision, settings=settings, engine=engine, progress=progress)
    return plan.as_saved()


def blur_video(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    targets: list[str | os.PathLike] | Gallery | None = None,
    keep: list[str | os.PathLike] | Gallery | None = None,
    all_faces: bool = False,
    tolerance: float = DecisionSettings.tolerance,
    mask_unsure: bool = True,
    analysis: AnalysisSettings | str = "balanced",
    render_settings: RenderSettings = RenderSettings(),
    strict_reference: bool = False,
    overwrite: bool = False,
    plan_path: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Result:
    """Mask ``targets`` (or everyone but ``keep``, or ``all_faces``) in ``src``; write ``dst``.

    ``dst`` defaults to ``video.blurred.mp4`` beside ``video.mp4``. Exactly one of
    ``targets``, ``keep`` and ``all_faces`` must be given.

    Raises:
        InputError: bad combination of options, unusable video or reference.
        OutputError: ``dst`` cannot be written.
    """
    chosen = [bool(targets), bool(keep), bool(all_faces)]
    if sum(chosen) != 1:
        raise InputError("give exactly one of targets, keep or all_faces")
    dst = Path(dst) if dst is not None else media.default_output_path(src)
    media.check_output(src, dst, overwrite=overwrite)
    started = time.perf_counter()
    plan = make_plan(
        src, targets=targets, keep=keep, all_faces=all_faces, tolerance=tolerance, mask_unsure=mask_unsure,
        analysis=analysis, strict_reference=strict_reference, progress=progress,
    )
    analysed = time.perf_counter() - started
    result = render(plan, dst, settings=render_settings, overwrite=overwrite, progress=progress)
    # Written only once the video is: an interrupted run leaves neither behind.
    if plan_path is not None:
        plan.save(plan_path)
    return replace(result, seconds_analyse=analysed)
