"""render(plan, dst) -> Result: the render stage.

Decodes the video again, masks what the plan says and encodes (:func:`media.transcode`),
so memory does not grow with the video's length.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import media, metadata
from .boxes import halfway_boxes
from .mask import DEFAULT_PAD, EFFECTS, Masker
from .plan import Plan
from .decisions import decision_counts
from .types import InputError, Progress, Result, VideoInfo

log = logging.getLogger(__name__)

# What a render makes of the same plan and settings. Bump it whenever that changes a pixel
# (an effect's strength, rounding, padding rules): batch outputs made before are then redone
# (it is part of the batch's fingerprint), where otherwise they would count as up to date.
# 2 (2026-12-08): pixelate 6 blocks instead of 8; batch plans rounded as saved plans are.
RENDER_REVISION = 2




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

def check_same_video(info: VideoInfo, plan: Plan) -> None:
    """Refuse a video that is not the one ``plan`` was made for (size, or frame count off by over 2%).

    Raises:
        InputError: naming both and the fix.
    """
    if (info.width, info.height) != (plan.video.width, plan.video.height) or abs(
        info.frame_count - plan.frame_count
    ) > max(2, plan.frame_count // 50):
        raise InputError(
            f"{info.path!r} ({info.width}x{info.height}, {info.frame_count} frames) is not the video the plan "
            f"was made for ({plan.video.width}x{plan.video.height}, {plan.frame_count} frames): analyse it again"
        )


class _PlanMasks:
    """The plan's boxes, frame by frame, for :func:`media.transcode` (a ``FrameMasks``).

    Each frame's unmasked faces are spared: :meth:`boxes` keeps them for the
    :meth:`apply` / :meth:`apply_planes` call that follows it on the same frame, so a
    mask's padding is trimmed off their eyes, nose and mouth (:class:`Masker`'s ``spare``).

    ``fields``: the output stays interlaced. The plan's boxes are where the face was in
    the first field (the analysis saw bwdif pictures at that moment); the second field
    is half a frame later, so each frame also masks the box halfway to the same face's
    box on the next frame (the nearest one, by centre). Both fields are then covered
    however fast the face moves. Spared faces are spared at both places too.
    """

    def __init__(self, plan: Plan, masker: Masker, *, fields: bool, progress: Progress | None) -> None:
        self.masker = masker
        self.fields = fields
        self.progress = progress
        self._iter = plan.iter_frame_masks()
        self._next: tuple[np.ndarray, np.ndarray] | None = None
        self._spare = np.zeros((0, 4), np.float32)
        self.position = -1
        self.masked_frames = self.masked_boxes = 0
        self.regions = masker.regions
        self.plane_fills = masker.plane_fills

    def _take(self) -> tuple[np.ndarray, np.ndarray]:
        if self._next is not None:
            pair, self._next = self._next, None
            return pair
        empty = np.zeros((0, 4), np.float32)
        masked, spared = next(self._iter, (empty, empty))
        return np.asarray(masked, np.float32).reshape(-1, 4), np.asarray(spared, np.float32).reshape(-1, 4)

    def boxes(self, index: int) -> np.ndarray:
        boxes = spare = np.zeros((0, 4), np.float32)
        while self.position < index:
            boxes, spare = self._take()
            self.position += 1
        if len(boxes):
            self.masked_frames += 1
            self.masked_boxes += len(boxes)
        if self.fields and len(boxes):
            self._next = self._take()
            boxes = np.concatenate([boxes, halfway_boxes(boxes, self._next[0])])
            spare = np.concatenate([spare, halfway_boxes(spare, self._next[1])])
        self._spare = spare
        if self.progress:
            self.progress("render", 1)
        return boxes

    def apply(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """:meth:`Masker.apply`, sparing the unmasked faces of the frame :meth:`boxes` last gave."""
        return self.masker.apply(image, boxes, spare=self._spare)

    def apply_planes(
        self, planes: list[np.ndarray], boxes: np.ndarray, *, shifts: list[tuple[int, int]], fills: list[int]
    ) -> None:
        """:meth:`Masker.apply_planes`, sparing the unmasked faces of the frame :meth:`boxes` last gave."""
        self.masker.apply_planes(planes, boxes, shifts=shifts, fills=fills, spare=self._spare)


def render(
    plan: Plan,
    dst: str | os.PathLike,
    *,
    settings: RenderSettings = RenderSettings(),
    src: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
) -> Result:
    """Decode ``src`` (default: the plan's video) again, mask per ``plan`` and write ``dst``.

    ``info``: that video's probe, when the caller has it (saves probing again).

    Raises:
        InputError: the video is not the one the plan was made for.
        OutputError: ``dst`` exists (without ``overwrite``), is the input, or is not writable.
    """
    info = info if info is not None else media.probe(src if src is not None else plan.video.path)
    check_same_video(info, plan)
    masks = _PlanMasks(plan, settings.masker(), fields=info.interlaced and not settings.encode.deinterlace,
                       progress=progress)
    started = time.perf_counter()
    # The same rule transcode applies, read from the same file: what the output leaves out.
    dropped = [] if settings.encode.keep_metadata else metadata.findings(media.read_tags(info.path))
    warnings = media.transcode(info, dst, settings=settings.encode, overwrite=overwrite, masks=masks)
    position, masked_frames, masked_boxes = masks.position, masks.masked_frames, masks.masked_boxes
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
        metadata_dropped=[str(f) for f in dropped],
        decisions=decision_counts(plan.tracks),
    )
