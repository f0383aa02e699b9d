"""Minimum-cost assignment of rows to columns, and the close contests it should not settle alone.

How :class:`~blurface.track.FaceTracker` links detections to tracks: :func:`linear_assignment`
picks the links, and :func:`close_contest` marks the pairs whose geometry is too close to a
rival's for the costs alone to decide (the tracker weighs embeddings there).
"""

from __future__ import annotations

import numpy as np


def linear_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment (Hungarian / Kuhn-Munkres with potentials, O(n^2 m)).

    Written here rather than importing scipy's ``linear_sum_assignment``: a frame
    has a handful of faces, and blurface avoids the dependency.

    Args:
        cost: ``(n, m)`` finite costs.

    Returns:
        ``min(n, m)`` ``(row, col)`` pairs, sorted by row, minimising the total cost.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    transposed = n > m
    a = (cost.T if transposed else cost).tolist()
    n, m = (m, n) if transposed else (n, m)
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)  # p[j]: row (1-based) assigned to column j; 0 = none
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            row = a[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:  # augment along the alternating path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


# Two candidate links whose costs differ by less than this are settled by embeddings.
CONTEST_MARGIN = 0.5


def close_contest(cost: np.ndarray, cand: np.ndarray, margin: float = CONTEST_MARGIN) -> np.ndarray:
    """``(tracks, detections)`` candidates whose geometry barely beats, or barely loses to, a rival.

    A detection whose two cheapest candidate tracks cost within ``margin`` of each other
    is a toss-up that geometry should not settle alone, even when only one of the boxes
    overlaps it. Measured on the synthetic 720p clip: a bystander's face, missed for five
    frames while its track's prediction drifted off, was found beside the target (whose
    own face the detector missed); it overlapped only the target's track (cost 1.54
    against 1.70), so it was not embedded, the target's track took it, and the target
    leaked for 3 frames. A seated audience stays cheap: a neighbour costs about 2, its
    own track about 0.2.
    """
    out = np.zeros_like(cand)
    c = np.where(cand, cost, np.inf)
    for axis in (0, 1):
        if c.shape[axis] < 2:
            continue
        two = np.sort(c, axis=axis).take([0, 1], axis=axis)
        finite = np.isfinite(two).all(axis=axis)
        gap = np.diff(np.where(np.isfinite(two), two, 0.0), axis=axis).squeeze(axis)  # inf - inf would warn
        close = finite & (gap < margin)
        out |= cand & (np.expand_dims(close, axis) & (c <= np.expand_dims(two.take(1, axis=axis), axis)))
    return out
