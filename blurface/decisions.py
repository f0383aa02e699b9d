"""Who each track is: the decision rules, from a track's crop distances to the reference people.

A track (or a part of one, :mod:`blurface.identity`) is decided from all its crops
(:func:`track_distance`, :func:`decide`); two faces seen on the same frame cannot both be
one person (:func:`exclude_simultaneous`). The plan (:mod:`blurface.plan`) records the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .boxes import iou_matrix
from .embedders import SFace, embedder_settings
from .track import box_at
from .types import DECISIONS, Mode, Track

# The default embedder's thresholds (see blurface/embedders.py for how each was measured):
# an embedder owns its distance scale, and DecisionSettings.for_embedder() takes another's.
DEFAULT_TOLERANCE = SFace.tolerance
DEFAULT_UNSURE_MARGIN = SFace.unsure_margin
# Narrower faces are too small to identify (see DecisionSettings.min_identify_px).
DEFAULT_MIN_IDENTIFY_PX = SFace.min_identify_px


@dataclass(frozen=True)
class DecisionSettings:
    """How tracks become masked or not.

    Attributes:
        mode: ``target`` masks the target people, ``keep`` masks everyone but the kept
            people, ``all`` masks every face.
        people: the gallery names the mode refers to (targets or kept people).
        tolerance: distance at or below which a track is that person. Lower is stricter.
        unsure_margin: tracks within ``tolerance + unsure_margin`` are "unsure". In
            ``target`` mode they are masked unless ``mask_unsure`` is false; in ``keep``
            mode they are always masked.
        mask_unsure: see ``unsure_margin``.
        min_identify_px: a track whose largest face crop is narrower than this is too
            small to identify: where its distance would leave it unmasked, it is "unsure"
            instead (masked in ``target`` mode unless ``mask_unsure`` is false; always in
            ``keep`` mode). Embeddings of faces under about 32 px scatter widely.
    """

    mode: Mode
    people: tuple[str, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE
    unsure_margin: float = DEFAULT_UNSURE_MARGIN
    mask_unsure: bool = True
    min_identify_px: float = DEFAULT_MIN_IDENTIFY_PX

    @classmethod
    def for_embedder(cls, embedder: str, *, tolerance: float | None = None, **kwargs: object) -> DecisionSettings:
        """Settings on ``embedder``'s own distance scale; ``tolerance`` ``None`` (and any field not given) takes its default."""
        e = embedder_settings(embedder)
        fields: dict[str, object] = {"tolerance": e.tolerance if tolerance is None else tolerance,
                                     "unsure_margin": e.unsure_margin, "min_identify_px": e.min_identify_px}
        return cls(**{**fields, **kwargs})  # type: ignore[arg-type]


def track_distance(crop_distances: np.ndarray) -> float:
    """One distance for a track from its crops' distances to one person.

    The mean of the best half (at least one, at most three) of the crops: one lucky
    crop cannot decide alone once there are several, and a few bad crops (blur,
    profile) cannot hide a good match.
    """
    d = np.sort(np.asarray(crop_distances, np.float64).reshape(-1))
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.inf
    k = min(3, max(1, len(d) // 2))
    return float(d[:k].mean())


def decide(
    track: Track,
    crop_distances: np.ndarray,
    names: list[str],
    settings: DecisionSettings,
    *,
    face_px: float | None = None,
) -> Track:
    """Set ``identity``, ``distance``, ``decision``, ``masked`` and ``reason`` of ``track``.

    Args:
        track: a finished track.
        crop_distances: ``(m, P)`` distances of the track's ``m`` embeddings to the
            ``P`` gallery people named by ``names``.
        names: gallery people, in column order.
        settings: the mode and thresholds.
        face_px: width of the track's largest face crop, full-frame pixels; ``None``
            when unknown (no size rule applies).

    Returns:
        ``track``, changed in place.
    """
    if settings.mode == "all":
        track.decision, track.masked, track.reason = "all", True, "--all: every face is masked"
        return track
    crop_distances = np.asarray(crop_distances, np.float32).reshape(len(track.embeddings), len(names))
    per_person = [track_distance(crop_distances[:, j]) for j in range(len(names))]
    relevant = [j for j, n in enumerate(names) if n in settings.people]
    if not relevant or len(crop_distances) == 0:
        track.identity, track.distance = None, None
        if settings.mode == "target":
            # No evidence either way: a privacy tool masks rather than guesses.
            track.decision, track.masked = "unsure", settings.mask_unsure
            track.reason = "no usable face crop to compare; masked as unsure" if settings.mask_unsure else (
                "no usable face crop to compare; left as --unsure keep asks")
        else:
            track.decision, track.masked, track.reason = "unsure", True, "no usable face crop; masked (--keep masks unsure faces)"
        return track
    best = min(relevant, key=lambda j: per_person[j])
    d = per_person[best]
    track.identity, track.distance = names[best], round(d, 4)
    limit, unsure_limit = settings.tolerance, settings.tolerance + settings.unsure_margin
    n = len(crop_distances)
    evidence = f"{n} crop{'s' if n != 1 else ''}, distance {d:.3f}"
    if settings.mode == "target":
        if d <= limit:
            track.decision, track.masked = "target", True
            track.reason = f"matches target {names[best]} ({evidence} <= tolerance {limit:.2f})"
        elif d <= unsure_limit:
            track.decision, track.masked = "unsure", settings.mask_unsure
            track.reason = (
                f"unsure: close to target {names[best]} ({evidence}, within {unsure_limit:.2f}); "
                + ("masked to be safe" if settings.mask_unsure else "left unmasked by --unsure keep")
            )
        else:
            track.decision, track.masked = "other", False
            track.reason = f"not a target (nearest {names[best]}: {evidence} > {unsure_limit:.2f})"
    else:
        if d <= limit:
            track.decision, track.masked = "keep", False
            track.reason = f"kept person {names[best]} ({evidence} <= tolerance {limit:.2f})"
        elif d <= unsure_limit:
            track.decision, track.masked = "unsure", True
            track.reason = f"unsure: near kept person {names[best]} ({evidence}); --keep masks unsure faces"
        else:
            track.decision, track.masked = "other", True
            track.reason = f"not a kept person (nearest {names[best]}: {evidence}); masked"
    small = face_px is not None and face_px < settings.min_identify_px
    if small and not track.masked and track.decision in ("other", "keep"):
        size = f"face at most {face_px:.0f} px wide, under {settings.min_identify_px:.0f} px: too small to identify"
        track.decision = "unsure"
        if settings.mode == "target":
            track.masked = settings.mask_unsure
            track.reason = f"unsure: {size} ({evidence}); " + (
                "masked to be safe" if settings.mask_unsure else "left unmasked by --unsure keep")
        else:
            track.masked = True
            track.reason = f"unsure: {size} ({evidence}); --keep masks unsure faces"
    return track


def who(track: Track) -> tuple[str, str]:
    """What to call a track's face, and the evidence: ``("lin", "distance 0.80")``, ``("other", "nearest lin 1.30")``.

    Only a face decided to *be* a reference person (a target, or a kept person) is
    named; every other face is "other" or "unsure", with the nearest reference as
    detail, so no label reads like an identification of a stranger.
    """
    dist = "" if track.distance is None else f" {track.distance:.2f}"
    if track.decision in ("target", "keep") and track.identity is not None:
        return track.identity, f"distance{dist}".strip()
    name = {"all": "face", "manual": "drawn"}.get(track.decision, track.decision)
    return name, (f"nearest {track.identity}{dist}" if track.identity is not None else "")


def decision_counts(tracks: list[Track]) -> dict[str, int]:
    """How many tracks were decided each way, in a fixed order (the summary line's counts)."""
    counts = {d: 0 for d in DECISIONS}
    for t in tracks:
        counts[t.decision] = counts.get(t.decision, 0) + 1
    return counts


def exclude_simultaneous(tracks: list[Track], settings: DecisionSettings) -> int:
    """Unmask unsure tracks seen at the same time as a confident match of the same person.

    One person is not in two places in one frame, so in ``target`` mode an unsure
    track that overlaps (in frames) a track matched within tolerance to the same
    target is someone else. Returns how many tracks changed. Confident matches are
    never changed: two at once may be a duplicate detection of one face.
    """
    if settings.mode != "target" or not settings.mask_unsure:
        return 0
    sure = [t for t in tracks if t.decision == "target"]
    changed = 0
    for t in tracks:
        if t.decision != "unsure" or t.identity is None:
            continue
        for other in sure:
            if other.identity == t.identity and other.first <= t.last and t.first <= other.last:
                overlap = np.intersect1d(t.frames, other.frames[other.source == 0])
                # Where the two boxes overlap it is one face found twice (e.g. followed
                # backwards into frames another track of it covered): the same person.
                apart = [f for f in overlap if _apart(box_at(t, int(f)), box_at(other, int(f)))]
                if apart:
                    t.decision, t.masked = "other", False
                    t.reason = (
                        f"not {t.identity}: on screen at the same time as track {other.id}, "
                        f"which matches {t.identity} (distance {other.distance}); was unsure at {t.distance}"
                    )
                    changed += 1
                    break
    return changed


def _apart(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and float(iou_matrix(a[None], b[None])[0, 0]) < 0.1
