"""One identity per track: find where a track's crops change from one person to another, and split it there.

A tracker links faces by position; during an occlusion a track can slide from one
face onto another (held-out real footage: a track followed a woman for 250 frames,
then took the face of a man passing in front). Decided as a whole, such a track gets
one answer for two people, and the whole-track rule then spreads a wrong "not the
target" over every frame of the target. So a finished track's crops, taken over its
whole life, are compared along it: where the ones before a point and the ones after
it are clearly two people, the track becomes two parts decided on their own, and the
frames between the last crop of one part and the first of the next (where the switch
happened, unseen) become a part of their own ("switch"), masked when either side is.

Pure functions on arrays and :class:`~blurface.types.Track`; no model, no video.
"""

from __future__ import annotations

import numpy as np

from .types import Track


def change_point(embeddings: np.ndarray, *, distance: float, min_part: int) -> int | None:
    """Index ``k`` where ``embeddings[:k]`` and ``embeddings[k:]`` are clearly two people, or ``None``.

    Args:
        embeddings: ``(n, d)`` one track's crop embeddings in frame order.
        distance: the two parts' mean embeddings must be further apart than this
            (the embedder's ``split_distance``). Raise it to split less.
        min_part: crops each part needs: one odd crop (blur, a turned head) never splits.

    Returns:
        The ``k`` whose parts' means are furthest apart, if that is over ``distance``.
    """
    e = np.asarray(embeddings, np.float64)
    n = len(e)
    if n < 2 * min_part:
        return None
    best_k, best_d = None, distance
    prefix = np.cumsum(e, axis=0)
    total = prefix[-1]
    for k in range(min_part, n - min_part + 1):
        a = prefix[k - 1] / k
        b = (total - prefix[k - 1]) / (n - k)
        d = float(np.linalg.norm(a - b))
        if d > best_d:
            best_k, best_d = k, d
    return best_k


def parts(embeddings: np.ndarray, *, distance: float, min_part: int, max_parts: int = 4) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` runs of ``embeddings`` (frame order) that each hold one person.

    Binary segmentation: split at the clearest change point, then look again inside each
    part, up to ``max_parts`` parts. One run ``[(0, n)]`` when the track keeps one identity.
    """
    runs = [(0, len(embeddings))]
    changed = True
    while changed and len(runs) < max_parts:
        changed = False
        for i, (lo, hi) in enumerate(runs):
            k = change_point(embeddings[lo:hi], distance=distance, min_part=min_part)
            if k is not None:
                runs[i : i + 1] = [(lo, lo + k), (lo + k, hi)]
                changed = True
                break
    return runs


def _rows(track: Track, keep: np.ndarray, new_id: int, embedding_rows: np.ndarray) -> Track:
    return Track(
        id=new_id,
        frames=track.frames[keep],
        xyxy=track.xyxy[keep],
        source=track.source[keep],
        embeddings=track.embeddings[embedding_rows],
        embedding_frames=track.embedding_frames[embedding_rows],
    )


def split_track(
    track: Track, *, distance: float, min_part: int, new_ids: list[int], max_parts: int = 4
) -> list[Track]:
    """``track`` cut where its embeddings change person: ``[track]`` when they never do.

    The track's ``embeddings`` must be in ``embedding_frames`` order. A split gives, in
    frame order, each one-person part (its frames from its first to its last crop's
    frame, widened to the track's ends for the first and last part) and, between two
    parts, the frames where the switch happened unseen (no crop there) as a part with
    no embeddings. The first part keeps ``track.id``; the others take ids from
    ``new_ids`` (popped from the front).

    Raises:
        ValueError: ``embedding_frames`` are not in order.
    """
    if np.any(np.diff(track.embedding_frames) < 0):
        raise ValueError(f"track {track.id}: embeddings must be in frame order to look for a change of person")
    runs = parts(track.embeddings, distance=distance, min_part=min_part, max_parts=max_parts)
    if len(runs) == 1:
        return [track]
    out: list[Track] = []
    ef = track.embedding_frames
    for i, (lo, hi) in enumerate(runs):
        start = track.first if i == 0 else int(ef[lo])
        end = track.last if i == len(runs) - 1 else int(ef[hi - 1])
        keep = (track.frames >= start) & (track.frames <= end)
        out.append(_rows(track, keep, track.id if i == 0 else new_ids.pop(0), np.arange(lo, hi)))
        if i < len(runs) - 1:
            gap = (track.frames > end) & (track.frames < int(ef[hi]))
            if gap.any():
                out.append(_rows(track, gap, new_ids.pop(0), np.zeros(0, np.int64)))
    return out
