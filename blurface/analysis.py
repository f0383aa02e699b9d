"""analyse(src) -> Plan: the analysis stage.

Analysis decodes once, looks for faces where :mod:`blurface.schedule` says (the whole
frame now and then, regions around followed faces in between), links detections into
tracks, follows new faces backwards through a bounded buffer of recent frames, embeds
a few good crops per track, splits a track where its crops disagree
(:mod:`blurface.identity`) and decides each part's identity from all its evidence.

What it is asked (whom, settings, presets) is in :mod:`blurface.settings`; the crops a
track keeps, in :mod:`blurface.crops`. The :class:`Analyser` is one cohesive thing: the
frame loop and the state it keeps between frames.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict

import numpy as np

from . import boxes, media
from .embedding import (
    EmbedExecutor, EmbedJob, InlineExecutor, WorkerGone, default_executor, embed_job, embed_now,
)
from .faces import FaceEngine, sharpness
from .gallery import Gallery, embedder_tag
from .embedders import make_embedder
from .identity import split_track
from .plan import Plan
from .decisions import DecisionSettings, decide, exclude_simultaneous
from .schedule import DetectionSchedule, Step, continues
from .shots import SceneCutDetector
from .track import FaceTracker, extend_track
from .crops import CropBuffer, crop_face, frontal
from .settings import AnalysisSettings, Who, coarse_scale, detection_scale, preset
from .types import SOURCE_DETECTED, DecodedFrame, Faces, GalleryError, Progress, Track, VideoInfo

log = logging.getLogger(__name__)



# Side, in detector pixels, at which a region around a followed face is searched: the
# face (2.5x smaller than its region) is then about 50 px, well above the detector's minimum.
_REGION_PX = 128
_REGION_CONTEXT = 2.5
# Pixels of frames kept for following faces backwards, at most.
_BUFFER_BYTES = 256 * 1024 * 1024
# Following a face backwards stops after this many frames without finding it.
_BACKWARD_MISSES = 2


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


class Analyser:
    """One analysis of one video. Not reusable: make one per file (state lives here).

    Args:
        engine: the detector and embedder; its detector is used as it is (its own threshold).
        embed_executor: where track crops are embedded; default: a worker process when
            ``settings.embed_process`` (else this thread). One passed in is not closed here.
    """

    def __init__(
        self,
        engine: FaceEngine,
        gallery: Gallery,
        decision: DecisionSettings,
        settings: AnalysisSettings,
        *,
        embed_executor: EmbedExecutor | None = None,
    ) -> None:
        tag = embedder_tag(engine.embedder)
        if len(gallery) and gallery.embedder is not None and gallery.embedder != tag:
            # Distances between two embedders' vectors mean nothing: never compared silently.
            raise GalleryError(f"the reference people were embedded by {gallery.embedder} and this analysis uses "
                               f"{tag}: run 'blurface enroll' again from the photos")
        self.engine = engine
        self.gallery = gallery
        self.decision = decision
        self.settings = settings
        self.tracks: list[Track] = []
        self.cuts: list[int] = [0]
        self.embeddings_computed = 0
        self.full_passes = 0
        self.coarse_passes = 0
        self.region_passes = 0
        self.regions_searched = 0
        self.backward_frames = 0
        self.seconds_detecting = 0.0
        self._buffers: dict[int, CropBuffer] = {}
        # (track, embedding job or result, the job for an in-process retry, largest face)
        self._decisions: deque[tuple[Track, Future | None, EmbedJob | None, float]] = deque()
        self._executor = embed_executor
        self._own_executor = embed_executor is None
        # (original track id, its parts) for each track split where its identity changed.
        self._pending_parts: list[tuple[int, list[Track]]] = []
        # Ends of split parts that meet another part: not extended (the face did not leave there).
        self._joined_ends: dict[int, tuple[bool, bool]] = {}

    def run(self, src: str | os.PathLike, progress: Progress | None = None, *, info: VideoInfo | None = None) -> Plan:
        info = info or media.probe(src)
        if self._executor is None:
            needs = self.decision.mode != "all" and len(self.gallery) > 0
            self._executor = (
                default_executor(self.engine.embedder) if needs and self.settings.embed_process
                else InlineExecutor(self.engine.embedder)
            )
        try:
            return self._run(info, progress)
        finally:
            if self._own_executor and self._executor is not None:
                self._executor.close()

    def _run(self, info: VideoInfo, progress: Progress | None) -> Plan:
        s = self.settings
        detector = self.engine.detector
        scale = detection_scale(s, detector.min_face_px, info.width, info.height, self.decision.mode)
        full_size = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))
        coarse = coarse_scale(scale, info.width, info.height)
        # Where half the scale is not smaller (a tiny frame), every pass is fine.
        wanted = s.fine_every_all if self.decision.mode == "all" else s.fine_every
        fine_every = wanted if coarse < scale else 1
        coarse_size = (max(2, round(info.width * coarse)), max(2, round(info.height * coarse)))
        # Frames between two fine passes: a small face may wait this long to be found.
        fine_interval = s.full_every * fine_every
        fps = float(info.fps) if info.fps else 30.0
        tracker = FaceTracker(
            max_gap=max(fine_interval, round(s.max_gap_seconds * fps)), embedding_gate=self.engine.embedder.track_gate
        )
        schedule = DetectionSchedule(
            info.width, info.height, full_every=s.full_every, follow_every=s.follow_every,
            context=_REGION_CONTEXT, region_px=_REGION_PX, full_pixels=full_size[0] * full_size[1],
            fine_every=fine_every,
        )
        cuts = SceneCutDetector()
        # A buffered frame holds its decoded YUV picture and, once detected on, its BGR one.
        frame_bytes = max(1, info.width * info.height * 9 // 2)
        # The buffer spans the frames since the last fine pass and one coarse interval more
        # (with fine_every 1: twice full_every, as before two tiers).
        keep = s.buffer_frames or fine_interval + s.full_every + 2
        recent: deque[DecodedFrame] = deque(maxlen=max(1, min(keep, _BUFFER_BYTES // frame_bytes)))
        times: list[float] = []
        log.info(
            "analysing %s: %dx%d, %d frames; whole-frame passes every %d frames (at %dx%d one in %d, else %dx%d),"
            " regions of %d px between", info.path, info.width, info.height, info.frame_count, s.full_every,
            full_size[0], full_size[1], fine_every, coarse_size[0], coarse_size[1], _REGION_PX,
        )
        # Grey decoding hands over the Y plane and a thumbnail without conversion; the BGR
        # picture (frame.full_image()) is made only for frames the detector runs on, about
        # every other frame. Converting every 720p frame cost 4 ms of its ~60 ms.
        # Interlaced video is analysed deinterlaced: a combed moving face is two half-faces.
        for frame in media.iter_frames(info, fmt="gray", deinterlace=info.interlaced):
            i = frame.index
            times.append(frame.time)
            cut = cuts.update(frame.thumb) and i > 0
            if cut:
                tracker.cut(i)
                self.cuts.append(i)
                recent.clear()  # nothing before a cut belongs to the faces after it
            ids, predicted = tracker.live(i)
            step = schedule.step(i, cut=cut or i == 0, predicted=predicted)
            if step.runs:
                self._detect_and_track(frame, step, scale if not step.coarse else coarse, ids, predicted, tracker, recent)
            recent.append(frame)
            self._finish_tracks(tracker.pop_finished(i))
            self._collect_decisions(wait=False)
            if progress:
                progress("analyse", 1)
        self._finish_tracks(tracker.finish())
        self._collect_decisions(wait=True)
        self._number_parts(tracker.next_id)
        exclude_simultaneous(self.tracks, self.decision)
        frame_count = len(times)
        self._extend(frame_count, fps, info.width, info.height)
        self.tracks.sort(key=lambda t: (t.first, t.id))
        settings = {
            "analysis": asdict(s),
            "decision": asdict(self.decision),
            "detector": {"name": detector.name, "threshold": getattr(detector, "threshold", None),
                         "min_face_px": detector.min_face_px},
            "detection_size": list(full_size),
            "coarse_detection_size": list(coarse_size) if fine_every > 1 else None,
            "gallery": self.gallery.names,
            "full_passes": self.full_passes,
            "coarse_passes": self.coarse_passes,
            "region_passes": self.region_passes,
            "regions_searched": self.regions_searched,
            "backward_frames": self.backward_frames,
            "detection_ms_per_frame": round(1000 * self.seconds_detecting / max(1, frame_count), 2),
            "embeddings_computed": self.embeddings_computed,
            "embedder": {"name": self.engine.embedder.name, "version": self.engine.embedder.version},
            "splits": self._record_splits(),
            "scene_cuts": self.cuts[1:],
        }
        return Plan(
            video=info, mode=self.decision.mode, settings=settings, tracks=self.tracks, times=np.asarray(times)
        )

    def _detect(self, image: np.ndarray, step: Step, scale: float) -> Faces:
        started = time.perf_counter()
        detector = self.engine.detector
        if step.full and step.coarse:
            # The coarse pass finds the larger faces; the regions follow the known ones of any size.
            found = [detector.detect(image, scale=scale)]
            if step.regions:
                found.append(detector.detect_regions(image, step.regions, size=_REGION_PX))
                self.regions_searched += len(step.regions)
            faces = Faces.concat(found)
            if len(found) > 1 and len(faces) > 1:
                faces = faces[boxes.nms(faces.xyxy, faces.score, 0.4)]
            self.coarse_passes += 1
        elif step.full:
            faces = detector.detect(image, scale=scale)
            self.full_passes += 1
        else:
            faces = detector.detect_regions(image, step.regions, size=_REGION_PX)
            self.region_passes += 1
            self.regions_searched += len(step.regions)
        self.seconds_detecting += time.perf_counter() - started
        return faces

    def _detect_and_track(
        self, frame: DecodedFrame, step: Step, scale: float, ids: np.ndarray, predicted: np.ndarray,
        tracker: FaceTracker, recent: deque[DecodedFrame],
    ) -> None:
        image = frame.full_image()
        faces = self._detect(image, step, scale)
        i = frame.index
        if not step.full:
            # Only faces followed from a known track count here; a region pass looked at the
            # regions, so tracks outside them are neither matched nor missed.
            # One (tracks x regions) matrix: per pair it cost 0.2 s of a 5 s crowd clip.
            inside = boxes.overlap_of_smaller(predicted, np.array(step.regions, np.float32)) > 0.5
            looked = ids[inside.any(axis=1)] if len(ids) and len(step.regions) else ids[:0]
        first_new = tracker.next_id

        def embed(rows: np.ndarray) -> np.ndarray:
            self.embeddings_computed += len(rows)
            # Crops, not the frame: they can go to the worker, and the embedder converts
            # only them to RGB (the same descriptors: the crop holds all the landmark model sees).
            cut = [crop_face(image, faces.xyxy[r], None if faces.landmarks is None else faces.landmarks[r]) for r in rows]
            return embed_now([c for c, _, _ in cut], np.array([b for _, b, _ in cut], np.float32).reshape(-1, 4),
                             np.array([m for _, _, m in cut], np.float32).reshape(-1, 5, 2),
                             self.engine.embedder, self._executor)

        # Embeddings settle crossings (about 20 ms a face): the tracker asks only for faces whose
        # boxes overlap more than one track. Without them two faces crossing swapped tracks
        # and the target's mask followed a bystander (synthetic 720p clip: 54 leaked frames).
        use_embed = len(self.gallery) > 0 and self.decision.mode != "all"
        faces = tracker.update(i, faces, embed=embed if use_embed else None, looked=None if step.full else looked)
        born = np.flatnonzero(faces.track_id >= first_new)
        # New faces are found by whole-frame passes; one first seen in a region pass was
        # beside a followed face, and that region was searched in the frames before too.
        if step.full and len(born) and recent:
            self._follow_back(faces[born], tracker, recent)
        if self.decision.mode == "all":
            return
        for row in range(len(faces)):
            self._keep_crop(image, i, faces[row])

    def _keep_crop(self, image: np.ndarray, index: int, face: Faces) -> None:
        box = face.xyxy[0]
        tid = int(face.track_id[0])
        buf = self._buffers.setdefault(tid, CropBuffer(self.settings.crops_per_track))
        width = float(box[2] - box[0])
        # Bigger, sharper, surer and more frontal faces give better embeddings.
        detail = sharpness(image, box)
        marks = None if face.landmarks is None else face.landmarks[0]
        quality = min(width, 200.0) * math.sqrt(1.0 + detail) * (0.5 + float(face.score[0])) * frontal(marks)
        if buf.wants(quality, index):
            buf.add(quality, index, *crop_face(image, box, marks))

    def _follow_back(self, born: Faces, tracker: FaceTracker, recent: deque[DecodedFrame]) -> None:
        """Follow faces first seen now back through the buffered frames, while the detector finds them.

        A face found by a whole-frame pass was often there several frames earlier, too
        small, dim or turned for the pass before; these frames are masked from detections,
        not guesses. Stops at the buffer's start (the last cut clears it).
        """
        active = {int(t): (b.copy(), 0) for t, b in zip(born.track_id, born.xyxy)}
        found: dict[int, tuple[list[int], list[np.ndarray]]] = {t: ([], []) for t in active}
        for past in reversed(recent):
            if not active:
                break
            order = sorted(active)
            image = past.full_image()
            regions = [boxes.window(active[t][0], _REGION_CONTEXT, image.shape[1], image.shape[0]) for t in order]
            started = time.perf_counter()
            seen = self.engine.detector.detect_regions(image, regions, size=_REGION_PX)
            self.seconds_detecting += time.perf_counter() - started
            self.backward_frames += 1
            taken: set[int] = set()
            for t in order:
                box, misses = active[t]
                row = continues(box, seen.xyxy)
                if row is not None and row not in taken:
                    taken.add(row)
                    found[t][0].append(past.index)
                    found[t][1].append(seen.xyxy[row])
                    active[t] = (seen.xyxy[row].copy(), 0)
                    if self.decision.mode != "all":
                        self._keep_crop(image, past.index, _with_track(seen[row], t))
                elif misses + 1 >= _BACKWARD_MISSES:
                    del active[t]
                else:
                    active[t] = (box, misses + 1)
        for t, (frames, found_boxes) in found.items():
            if frames:
                tracker.prepend(t, frames, found_boxes)

    def _finish_tracks(self, finished: list[Track]) -> None:
        """Start embedding each finished track's crops; it is decided once they are back."""
        for track in finished:
            buf = self._buffers.pop(track.id, None)
            future: Future | None = None
            job: EmbedJob | None = None
            face_px = buf.face_px if buf is not None else 0.0
            if self.decision.mode != "all" and buf is not None and buf.items and len(self.gallery):
                kept = buf.in_order()
                track.embedding_frames = np.concatenate(
                    [track.embedding_frames, np.array([it[1] for it in kept], np.int64)]
                )
                job = EmbedJob(
                    crops=[it[2] for it in kept],
                    boxes=np.stack([it[3] for it in kept]),
                    landmarks=np.stack([it[4] for it in kept]),
                )
                assert self._executor is not None
                future = self._executor.submit(job)
            self._decisions.append((track, future, job, face_px))

    def _collect_decisions(self, *, wait: bool) -> None:
        """Decide tracks whose embeddings are back, in order; all of them when ``wait``."""
        while self._decisions:
            track, future, job, face_px = self._decisions[0]
            if future is not None and not wait and not future.done():
                return
            self._decisions.popleft()
            if future is not None and job is not None:
                embs = self._result(future, job)
                self.embeddings_computed += len(embs)
                track.embeddings = np.concatenate([track.embeddings, embs])
                # The tracker's own embeddings (crossings) and the crops', in frame order.
                order = np.argsort(track.embedding_frames, kind="stable")
                track.embeddings, track.embedding_frames = track.embeddings[order], track.embedding_frames[order]
            self.tracks.extend(self._decide(track, face_px))

    def _decide(self, track: Track, face_px: float) -> list[Track]:
        """Decide ``track``, first split where its crops show another person: each part on its own.

        The frames between two parts (where the switch happened, unseen) are a part of
        their own, decided "switch": masked when either side is, since who is there is
        unknown and one unmasked frame of the target is a leak.
        """
        embedder = self.engine.embedder
        pieces = [track]
        if self.decision.mode != "all":
            # Ids are placeholders here: parts are numbered at the end, in order, whatever the timing.
            pieces = split_track(track, distance=embedder.split_distance, min_part=_MIN_PART_CROPS,
                                 new_ids=[-1] * (2 * _MAX_PARTS - 1), max_parts=_MAX_PARTS)
        if len(pieces) == 1:
            dist = self.gallery.distances(track.embeddings) if len(self.gallery) else np.zeros((0, 0))
            decide(track, dist, self.gallery.names, self.decision, face_px=face_px)
            return pieces
        for piece in pieces:
            if len(piece.embeddings):
                # Each part by its own faces: a far target's part must not pass for the near passer's size.
                detected = piece.xyxy[piece.source == SOURCE_DETECTED]
                own_px = float((detected[:, 2] - detected[:, 0]).max()) if len(detected) else 0.0
                decide(piece, self.gallery.distances(piece.embeddings), self.gallery.names, self.decision,
                       face_px=own_px)
        self._keep_turned_parts(pieces)
        for i, piece in enumerate(pieces):
            if len(piece.embeddings) == 0:
                piece.masked = pieces[i - 1].masked or pieces[i + 1].masked
                piece.decision, piece.identity, piece.distance = "switch", None, None
                piece.reason = (
                    f"frames {piece.first}-{piece.last}, where track {track.id} changed from one face to another "
                    + ("unseen: masked because a side of it is masked" if piece.masked
                       else "unseen: neither side is masked")
                )
        self._pending_parts.append((track.id, pieces))
        return pieces

    def _keep_turned_parts(self, pieces: list[Track]) -> None:
        """In ``--target`` mode, a part just past the unsure band beside a masked part stays masked, as unsure.

        A split can also fall where one person turned (frontal, then profile: the two halves'
        means were up to 1.06 apart on the shared clip, against a split distance of 1.1);
        alone, the profile part would be decided "other" and left visible. Only a part
        clearly beyond the band (by :data:`_TURNED_MARGIN`) is someone else.
        """
        s = self.decision
        if s.mode != "target":
            return
        faces = [p for p in pieces if len(p.embeddings)]
        limit = s.tolerance + s.unsure_margin + _TURNED_MARGIN
        for i, part in enumerate(faces):
            beside = [faces[j] for j in (i - 1, i + 1) if 0 <= j < len(faces) and faces[j].masked]
            if part.decision == "other" and beside and part.distance is not None and part.distance <= limit:
                part.decision, part.masked = "unsure", s.mask_unsure
                part.reason = (
                    f"unsure: {part.distance:.3f} from {part.identity}, within {limit:.2f}, next to a part of the same "
                    f"track that is masked (a face that turned looks like this); "
                    + ("masked to be safe" if s.mask_unsure else "left unmasked by --unsure keep")
                )

    def _number_parts(self, next_id: int) -> None:
        """Give split parts their ids (after every tracker id, ordered by the split track's first frame)."""
        self._pending_parts.sort(key=lambda x: (x[1][0].first, x[0]))
        for original, pieces in self._pending_parts:
            for i, piece in enumerate(pieces):
                if i > 0:
                    piece.id = next_id
                    next_id += 1
                piece.reason = (f"part {i + 1} of {len(pieces)} of track {original}, split where its face crops "
                                f"changed person: {piece.reason}")
                # A part ends where the next part (someone else) begins: not extended there.
                self._joined_ends[piece.id] = (i > 0, i < len(pieces) - 1)

    def _record_splits(self) -> list[dict]:
        """The plan's record of each split: the track, its parts' ids and frames (as extended)."""
        by_id = {t.id: t for t in self.tracks}
        return [
            {"track": original, "parts": [p.id for p in pieces],
             "frames": [[by_id[p.id].first, by_id[p.id].last] for p in pieces]}
            for original, pieces in self._pending_parts  # in id order since _number_parts
        ]

    def _result(self, future: Future, job: EmbedJob) -> np.ndarray:
        try:
            return future.result()
        except WorkerGone as e:
            # The worker died (killed, out of memory): the same work here, and for the rest.
            log.warning("%s; embedding in this process from now on", e)
            if self._own_executor and self._executor is not None:
                self._executor.close()
            self._executor = InlineExecutor(self.engine.embedder)
            return embed_job(job, self.engine.embedder)

    def _extend(self, frame_count: int, fps: float, width: int, height: int) -> None:
        n = max(1, round(self.settings.extend_seconds * fps), self.settings.follow_every)
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
            # A part of a split track ends where the next part (someone else) begins.
            joined_before, joined_after = self._joined_ends.get(t.id, (False, False))
            before, after = (0 if joined_before else before), (0 if joined_after else after)
            extended.append(extend_track(t, before=before, after=after, lo=lo, hi=hi, frame_size=(width, height)))
        self.tracks = extended


def _with_track(face: Faces, track_id: int) -> Faces:
    return Faces(face.xyxy, face.score, np.array([track_id], np.int64), None, face.landmarks)


# Crops each part of a split track needs: one or two odd crops (blur, a turned head) never
# split a track. Three crops' mean is steady enough to compare (embedders.SFace.split_distance).
_MIN_PART_CROPS = 3
# Parts one track may be split into (each a person; the unseen switches between them come on top).
_MAX_PARTS = 4
# A part decided "other" within this much past the unsure band, beside a masked part of the same
# track, is masked as unsure (Analyser._keep_turned_parts). A second net under the split distance:
# one person's profile faces are 1.07-1.28 from their frontal photos (shared clip; a part's
# best-half mean lies lower), the passers' parts in tests/test_identity.py 1.28-1.31.
_TURNED_MARGIN = 0.03


def analyse(
    src: str | os.PathLike,
    *,
    gallery: Gallery,
    decision: DecisionSettings,
    settings: AnalysisSettings = AnalysisSettings(),
    engine: FaceEngine | None = None,
    embed_executor: EmbedExecutor | None = None,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
) -> Plan:
    """Find, track and identify every face of ``src``; decide which to mask.

    Args:
        engine: detector and embedder to use as they are; default: built from ``settings``
            (the detector at ``settings.detect_threshold``).
        embed_executor: where crops are embedded (see :mod:`blurface.embedding`); default:
            a worker process when ``settings.embed_process``. Not closed here.
        info: ``src``'s probe, when the caller has it (saves probing again).

    Raises:
        MediaError: ``src`` cannot be read completely.
    """
    engine = engine or default_engine(settings)
    return Analyser(engine, gallery, decision, settings, embed_executor=embed_executor).run(src, progress, info=info)


def default_engine(settings: AnalysisSettings = AnalysisSettings()) -> FaceEngine:
    """The default detector (at ``settings.detect_threshold``) and embedder."""
    from .detectors import make_detector

    return FaceEngine(detector=make_detector(threshold=settings.detect_threshold, threads=settings.threads),
                      embedder=make_embedder(settings.embedder))

def make_plan(
    src: str | os.PathLike,
    *,
    targets: list[str | os.PathLike] | Gallery | None = None,
    keep: list[str | os.PathLike] | Gallery | None = None,
    all_faces: bool = False,
    tolerance: float | None = None,
    mask_unsure: bool = True,
    analysis: AnalysisSettings | str = "balanced",
    strict_reference: bool = False,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
    engine: FaceEngine | None = None,
) -> Plan:
    """Load the reference people and analyse ``src``: the plan :func:`~blurface.pipeline.blur_video` renders.

    ``info``: ``src``'s probe, when the caller has it (saves probing again).
    ``tolerance``: ``None`` takes the embedder's own (``analysis.embedder``).
    ``engine``: the face models, when the caller keeps them loaded (a batch worker, file after file).

    The plan comes back as :meth:`Plan.save` writes it (boxes to 0.1 px), so a
    render of it and a later render of the saved file give the same bytes.

    Raises:
        InputError: bad combination of options, unusable video or reference.
    """
    who = Who.from_args(targets, keep, all_faces)
    settings = preset(analysis) if isinstance(analysis, str) else analysis
    engine = engine if engine is not None else default_engine(settings)
    if isinstance(who.people, Gallery):
        gallery = who.people
    elif who.people:
        gallery = Gallery.from_paths(list(who.people), engine, strict=strict_reference)
    else:
        gallery = Gallery()
    decision = DecisionSettings.for_embedder(settings.embedder, tolerance=tolerance, mode=who.mode,
                                             people=tuple(gallery.names), mask_unsure=mask_unsure)
    plan = analyse(src, gallery=gallery, decision=decision, settings=settings, engine=engine, progress=progress,
                   info=info)
    return plan.as_saved()
