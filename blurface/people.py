"""Tracks grouped into people, from their face embeddings; a person saved as a gallery.

Often a reviewer has no photo of a person, only the footage: the tracks of one video
are grouped by face likeness so a person can be masked or kept in one click, and saved
as a ``.npz`` gallery for ``--target`` on other videos.

Grouping is agglomerative clustering with average linkage at the match tolerance
(the embedder's own: SFace 1.13), with one rule a face descriptor cannot know: two tracks on screen on the
same frame are two people, so they are never put in one group. Chinese whispers
(dlib) was the alternative; it links through single close pairs, so one blurred crop
between two people can chain them, and it has no place for the "never together" rule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import media, overlay
from .embedding import Embeds
from .boxes import iou_matrix
from .files import write_atomically
from .gallery import Gallery, Person, embedder_tag
from .plan import Plan
from .decisions import DEFAULT_TOLERANCE
from .types import EMBEDDING_DIM, SOURCE_DETECTED, GalleryError, OutputError, Track, VideoInfo

log = logging.getLogger(__name__)

# Crops embedded per track that has none (a loaded plan, or --all, keeps no embeddings):
# about 20 ms each (SFace); three spread over the track's life outvote one bad frame.
CROPS_PER_TRACK = 3
# Narrower faces give descriptors too noisy to group on (decisions.DEFAULT_MIN_IDENTIFY_PX says why).
MIN_GROUP_FACE_PX = 24.0


def embedding_frames(track: Track, per_track: int = CROPS_PER_TRACK) -> list[int]:
    """Frames to embed ``track`` on: its largest detected faces, spread over its life."""
    rows = np.flatnonzero(track.source == SOURCE_DETECTED)
    if len(rows) == 0:
        rows = np.arange(len(track.frames))
    widths = track.xyxy[rows, 2] - track.xyxy[rows, 0]
    # The wider half of the detected rows, then evenly spread picks among them.
    keep = rows[widths >= np.median(widths)]
    picks = np.linspace(0, len(keep) - 1, min(per_track, len(keep))).round().astype(int)
    return sorted({int(track.frames[keep[i]]) for i in picks})


def fill_embeddings(
    plan: Plan,
    embedder: Embeds,
    *,
    src: str | os.PathLike | None = None,
    per_track: int = CROPS_PER_TRACK,
    progress: Callable[[str, int], None] | None = None,
    info: VideoInfo | None = None,
) -> int:
    """Embed a few crops of every track that has no embeddings (a loaded plan, ``--all``), in place.

    Decodes only the frames needed, in one pass. Returns the number of faces embedded.
    ``info``: the video's probe, when the caller has it.
    """
    wanted: dict[int, list[Track]] = {}
    for t in plan.tracks:
        if len(t.embeddings) == 0:
            for f in embedding_frames(t, per_track):
                wanted.setdefault(f, []).append(t)
    if not wanted:
        return 0
    info = info if info is not None else media.probe(src if src is not None else plan.video.path)
    got: dict[int, list[tuple[int, np.ndarray]]] = {}
    lo, hi = min(wanted), max(wanted)
    count = 0
    for frame in media.iter_frames(info, start=float(plan.times[lo]), end=float(plan.times[hi]) + 1e-3,
                                   times=plan.times):
        tracks = wanted.get(frame.index)
        if not tracks:
            continue
        boxes = np.stack([t.xyxy[int(np.searchsorted(t.frames, frame.index))] for t in tracks])
        embs = embedder.embed(frame.image, boxes)  # landmarks found in each crop
        count += len(embs)
        for t, e in zip(tracks, embs, strict=True):
            got.setdefault(t.id, []).append((frame.index, e))
        if progress:
            progress("embed", len(tracks))
    for t in plan.tracks:
        if t.id in got:
            t.embedding_frames = np.array([f for f, _ in got[t.id]], np.int64)
            t.embeddings = np.stack([e for _, e in got[t.id]]).astype(np.float32)
    return count


def _face_px(track: Track) -> float:
    return float((track.xyxy[:, 2] - track.xyxy[:, 0]).max()) if len(track) else 0.0


def _together(a: Track, b: Track) -> bool:
    """On screen on a common frame at two places: two people.

    Boxes that overlap there are one face found twice (a track followed backwards into
    frames another track of it covered), as in :func:`blurface.decisions.exclude_simultaneous`.
    """
    if a.last < b.first or b.last < a.first:
        return False
    common, ia, ib = np.intersect1d(a.frames, b.frames, assume_unique=True, return_indices=True)
    return any(iou_matrix(a.xyxy[i][None], b.xyxy[j][None])[0, 0] < 0.1 for i, j in zip(ia, ib))


def group_tracks(tracks: list[Track], *, threshold: float = DEFAULT_TOLERANCE) -> list[list[int]]:
    """Group tracks into people: lists of track ids, largest (most frames) first.

    Average-linkage agglomerative clustering of the tracks' crop embeddings: two
    groups merge while the mean distance between their crops is at most
    ``threshold`` and no track of one shares a frame with a track of the other.
    A track with no embedding, or whose face is never :data:`MIN_GROUP_FACE_PX`
    wide, stays alone (nothing to compare). Lower ``threshold`` splits more.
    """
    usable = [t for t in tracks if len(t.embeddings) and _face_px(t) >= MIN_GROUP_FACE_PX]
    alone = [[t.id] for t in tracks if t not in usable]
    n = len(usable)
    groups: list[list[int]] = [[k] for k in range(n)]
    if n:
        embs = [t.embeddings.astype(np.float64) for t in usable]
        # Sum of crop-to-crop distances and crop-pair counts, per pair of groups.
        dsum = np.zeros((n, n))
        count = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                d = np.linalg.norm(embs[i][:, None, :] - embs[j][None, :, :], axis=2)
                dsum[i, j] = dsum[j, i] = d.sum()
                count[i, j] = count[j, i] = d.size
        apart = np.zeros((n, n), bool)
        for i in range(n):
            for j in range(i + 1, n):
                apart[i, j] = apart[j, i] = _together(usable[i], usable[j])
        live = list(range(n))
        while len(live) > 1:
            best, pair = np.inf, None
            for x, i in enumerate(live):
                for j in live[x + 1:]:
                    if not apart[i, j]:
                        mean = dsum[i, j] / count[i, j]
                        if mean < best:
                            best, pair = mean, (i, j)
            if pair is None or best > threshold:
                break
            i, j = pair
            groups[i] += groups[j]
            groups[j] = []
            dsum[i, :] += dsum[j, :]
            dsum[:, i] = dsum[i, :]
            count[i, :] += count[j, :]
            count[:, i] = count[i, :]
            apart[i, :] |= apart[j, :]
            apart[:, i] = apart[i, :]
            live.remove(j)
        groups = [groups[i] for i in live]
    out = [[usable[k].id for k in g] for g in groups] + alone
    size = {t.id: len(t) for t in tracks}
    return sorted((sorted(g) for g in out), key=lambda g: (-sum(size[i] for i in g), g[0]))


def person_of(plan: Plan, track_ids: list[int], name: str) -> Person:
    """The embeddings of ``track_ids`` as one gallery person called ``name``.

    Raises:
        GalleryError: none of the tracks has an embedding (run :func:`fill_embeddings` first).
    """
    rows = [plan.track(i).embeddings for i in track_ids]
    rows = [r for r in rows if len(r)]
    if not rows:
        raise GalleryError(f"tracks {track_ids} have no face embeddings: their faces were too small or never embedded")
    embs = np.concatenate(rows).astype(np.float32).reshape(-1, EMBEDDING_DIM)
    return Person(name, embs, [f"{Path(plan.video.path).name} track {i}" for i in track_ids])


def save_person(
    plan: Plan, track_ids: list[int], path: str | os.PathLike, *, embedder: Embeds, name: str | None = None
) -> Person:
    """Write ``track_ids`` as a one-person ``.npz`` gallery (usable with ``--target``), atomically.

    ``embedder``: the one that made the tracks' embeddings; the gallery records it.
    """
    person = person_of(plan, track_ids, name or Path(path).stem)
    Gallery([person], embedder=embedder_tag(embedder)).save(path)
    return person


# --------------------------------------------------------------------------- people sheet


def write_people_sheet(
    plan: Plan, groups: list[list[int]], dst: str | os.PathLike, *, src: str | os.PathLike | None = None,
    per_person: int = 6,
) -> None:
    """A PNG with one row per person: UNMASKED face crops from its tracks, and its track ids.

    The crops are for the reviewer, not for publishing.
    """
    info = media.probe(src if src is not None else plan.video.path)
    wanted: dict[int, list[tuple[int, np.ndarray]]] = {}
    for k, group in enumerate(groups):
        frames = [(t, f) for t in (plan.track(i) for i in group) for f in overlay.sheet_frames(t, per_person)]
        picks = np.linspace(0, len(frames) - 1, min(per_person, len(frames))).round().astype(int)
        for p in sorted(set(picks.tolist())):
            t, f = frames[p]
            wanted.setdefault(f, []).append((k, t.xyxy[int(np.searchsorted(t.frames, f))]))
    tiles: dict[int, list[np.ndarray]] = {k: [] for k in range(len(groups))}
    if wanted:
        for frame in media.iter_frames(info, start=float(plan.times[min(wanted)]),
                                       end=float(plan.times[max(wanted)]) + 1e-3, times=plan.times):
            for k, box in wanted.get(frame.index, []):
                tiles[k].append(overlay.face_tile(frame.image, box))
    width = overlay.PANEL + per_person * (overlay.TILE + 4) + 4
    rows = [overlay.sheet_header(
        f"{Path(info.path).name}: {len(groups)} people. Crops are UNMASKED: for review only, do not publish.", width)]
    for k, group in enumerate(groups):
        row = np.full((overlay.TILE + 8, width, 3), 250, np.uint8)
        frames = sum(len(plan.track(i)) for i in group)
        ids = ", ".join(str(i) for i in group)
        lines = [f"person {k + 1}", f"{len(group)} track(s), {frames} frames", f"tracks {ids}"[:40]]
        for y, text in enumerate(lines):
            cv2.putText(row, text, (14, 22 + 21 * y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for x, tile in enumerate(tiles[k]):
            row[4:4 + overlay.TILE, overlay.PANEL + x * (overlay.TILE + 4):][:, :overlay.TILE] = tile
        rows.append(row)
    ok, data = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise OutputError(f"{dst}: the people sheet could not be encoded as PNG")
    write_atomically(dst, lambda tmp: tmp.write_bytes(data.tobytes()), what="people sheet", error=OutputError)


@dataclass
class PeopleResult:
    groups: list[list[int]]
    galleries: list[Path]
    sheet: Path


def write_people(
    plan: Plan, embedder: Embeds, folder: str | os.PathLike, *, src: str | os.PathLike | None = None,
    threshold: float | None = None, overwrite: bool = False,
) -> PeopleResult:
    """Group ``plan``'s tracks and write ``folder/people.png`` and ``folder/person_N.npz`` per person.

    ``threshold``: tracks closer than this are one person; ``None``: the embedder's tolerance.

    A person whose tracks have no usable embedding (faces too small) gets no ``.npz``.

    Raises:
        OutputError: a file exists (without ``overwrite``), or ``folder`` is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder: give a folder for the people")
    folder.mkdir(parents=True, exist_ok=True)
    fill_embeddings(plan, embedder, src=src)
    groups = group_tracks(plan.tracks, threshold=getattr(embedder, "tolerance", DEFAULT_TOLERANCE)
                          if threshold is None else threshold)
    sheet = folder / "people.png"
    targets = [folder / f"person_{k + 1}.npz" for k in range(len(groups))]
    if not overwrite:
        for p in [sheet, *targets]:
            if p.exists():
                raise OutputError(f"{p} exists: use --overwrite to replace it")
    write_people_sheet(plan, groups, sheet, src=src)
    written = []
    for k, group in enumerate(groups):
        try:
            save_person(plan, group, targets[k], embedder=embedder, name=f"person_{k + 1}")
            written.append(targets[k])
        except GalleryError as e:
            log.info("person %d: no gallery (%s)", k + 1, e)
    return PeopleResult(groups, written, sheet)
