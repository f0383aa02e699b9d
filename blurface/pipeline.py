"""The composer: one :class:`Request` in, every output written. The stages live in their own modules.

:func:`run` probes the input once (a :class:`VideoSource` keeps the probe and the frame
times), analyses it (:mod:`blurface.analysis`) or takes a saved plan, renders it
(:mod:`blurface.rendering`, or :mod:`blurface.review` for a range or a proxy) and writes
every side file asked for. Every entry point calls it: the main command, ``render``,
``preview``, the review page's Render, ``batch`` workers, and the library through
:func:`blur_video`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from . import media
from .faces import FaceEngine
from .analysis import analyse, make_plan
from .settings import PRESETS, AnalysisSettings, References, Who, preset
from .plan import Plan
from .rendering import RenderSettings, check_same_video, render
from .types import InputError, OutputError, Progress, Result, VideoInfo

__all__ = [
    "PRESETS", "AnalysisSettings", "Outputs", "Progress", "RenderSettings", "Request", "VideoSource", "Who",
    "analyse", "blur_video", "check_same_video", "make_plan", "preset", "render", "run",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Outputs:
    """The files a run writes: the video, and the side files asked for (``None``: not wanted).

    ``report``: the audit report's JSON; its HTML twin goes beside it (``.html``).
    """

    video: str | os.PathLike
    plan: str | os.PathLike | None = None
    matte: str | os.PathLike | None = None
    contact_sheet: str | os.PathLike | None = None
    report: str | os.PathLike | None = None


@dataclass(frozen=True)
class Request:
    """One run: what to read, whom to mask or which plan to render, how, and what to write.

    Exactly one of ``who`` (analyse) and ``plan`` (render a saved, perhaps reviewed, plan).
    A range (``start``/``end``, seconds as the video's frame times), a proxy
    ``preview_height`` or an ``overlay`` renders an excerpt (:func:`blurface.review.render_range`);
    otherwise the whole file, with every stream, is rendered.
    """

    source: str | os.PathLike
    outputs: Outputs
    who: Who | None = None
    plan: Plan | None = None
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    tolerance: float | None = None  # None: the embedder's own
    mask_unsure: bool = True
    strict_reference: bool = False
    render: RenderSettings = field(default_factory=RenderSettings)
    start: float | None = None
    end: float | None = None
    preview_height: int | None = None
    overlay: bool = False
    overwrite: bool = False
    command: tuple[str, ...] = ()

    @property
    def ranged(self) -> bool:
        return self.start is not None or self.end is not None

    @property
    def excerpt(self) -> bool:
        """Rendered as a clip of its own (range, proxy or overlay), not as the whole file with its streams."""
        return self.ranged or self.preview_height is not None or self.overlay

    def plan_options(self) -> dict:
        """The analysis options, as :func:`~blurface.analysis.make_plan` takes them (and the audit report records)."""
        assert self.who is not None
        return {**self.who.plan_options(), "tolerance": self.tolerance, "mask_unsure": self.mask_unsure,
                "analysis": self.analysis, "strict_reference": self.strict_reference}


class VideoSource:
    """The input, probed once: every stage of a run takes its probe and frame times from here.

    Probing opens the file and reads its headers; the frame times read every packet.
    Both are asked for by several stages (analysis, render, range, contact sheet), so the
    first answer is kept.
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None) -> None:
        self.path = path
        if info is not None:  # the caller's probe: stored where cached_property keeps its answer
            self.__dict__["info"] = info

    @cached_property
    def info(self) -> VideoInfo:
        return media.probe(self.path)

    @cached_property
    def times(self) -> np.ndarray:
        return media.frame_times(self.info)


def run(
    request: Request, progress: Progress | None = None, *, source: VideoSource | None = None,
    engine: FaceEngine | None = None,
) -> Result:
    """Analyse (or take ``request.plan``), render and write every output ``request`` asks for.

    Every output is checked before the analysis, which may take long. They are written
    video first, then the plan, matte, contact sheet and report; should a side file fail
    (the disk filled up meanwhile), the files this run wrote go too: a run writes all its
    outputs or none. The report, when asked for, hashes the input first and again at the
    end; if the input changed meanwhile, the outputs go and the report stays, saying so.

    ``source``: the input, when the caller has already probed it (it is then probed nowhere else).
    ``engine``: the face models, when the caller keeps them loaded (a batch worker, file after file).

    Raises:
        InputError: bad combination of options, unusable video, reference or plan.
        OutputError: an output cannot be written (checked before the work where it can be).
    """
    from . import review
    from .report import AuditReport

    if (request.who is None) == (request.plan is None):
        raise InputError("give exactly one of who (to analyse) or plan (to render a saved plan)")
    if request.plan is not None and request.outputs.plan is not None:
        raise InputError("a saved plan is rendered as it is: leave outputs.plan out (Plan.save writes a copy)")
    source = source if source is not None else VideoSource(request.source)
    out = request.outputs
    media.check_output(request.source, out.video, overwrite=request.overwrite)
    _check_side_outputs(request)
    info = source.info
    if request.plan is not None:
        check_same_video(info, request.plan)
    if not request.excerpt:
        media.output_format(info, request.render.encode, out.video)  # e.g. ProRes into .mp4: refused now
    audit = None
    if out.report is not None:
        audit = AuditReport(
            out.report, request.source, command=list(request.command),
            settings={
                "render": request.render, "range": {"from": request.start, "to": request.end},
                "preview_height": request.preview_height, "overlay": request.overlay,
                "plan_given": request.plan is not None,
                "analysis_options": None if request.plan is not None else request.plan_options(),
                "analysis_margin_s": review.ANALYSIS_MARGIN if request.ranged and request.plan is None else None,
            },
        )
    started = time.perf_counter()
    plan = request.plan
    if plan is None:
        if request.ranged:
            plan = review.analyse_range(request.source, request.start, request.end, progress=progress,
                                        info=info, times=source.times, engine=engine, **request.plan_options())
        else:
            plan = make_plan(request.source, progress=progress, info=info, engine=engine, **request.plan_options())
    analysed = time.perf_counter() - started
    if request.excerpt:
        result = review.render_range(
            plan, out.video, start=request.start, end=request.end, settings=request.render,
            height=request.preview_height, show_overlay=request.overlay, src=request.source,
            overwrite=request.overwrite, progress=progress, info=info,
        )
    else:
        result = render(plan, out.video, settings=request.render, src=request.source, overwrite=request.overwrite,
                        progress=progress, info=info)
    written: list[Path] = [Path(out.video)]
    try:
        _write_side_files(request, plan, result, audit, progress, info, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return replace(result, seconds_analyse=analysed)


# Side outputs and the suffixes their writers take.
_SIDE_SUFFIXES = {"plan": None, "matte": (".mov", ".mkv"), "contact_sheet": (".png",), "report": (".json",)}


def _check_side_outputs(request: Request) -> None:
    """Refuse an unusable side output before any work, by the rules of the video's (:func:`media.check_side_output`).

    The CLI checks the same first, in its options' words; this is for every other caller.
    """
    out = request.outputs
    taken: list[str | os.PathLike] = [out.video]
    for name, suffixes in _SIDE_SUFFIXES.items():
        path = getattr(out, name)
        if path is None:
            continue
        if suffixes is not None and Path(path).suffix.lower() not in suffixes:
            raise OutputError(f"{path}: outputs.{name} must end in {' or '.join(suffixes)}")
        paths = [path, Path(path).with_suffix(".html")] if name == "report" else [path]
        for p in paths:
            media.check_side_output(p, f"outputs.{name}", inputs=[request.source], outputs=taken,
                                    overwrite=request.overwrite)
            taken.append(p)


def _write_side_files(
    request: Request, plan: Plan, result: Result, audit: object, progress: Progress | None, info: VideoInfo,
    written: list[Path],
) -> None:
    """The plan, matte, contact sheet and report, in that order; each one added to ``written`` once it is."""
    from . import review

    out = request.outputs
    side: dict[str, str | os.PathLike] = {}
    if out.plan is not None:
        if not request.excerpt:  # an excerpt keeps no metadata at all: nothing to list
            # What the output left out, for the record: a reviewed plan renders it the same way.
            plan.metadata_dropped = list(result.metadata_dropped)
        plan.save(out.plan)
        written.append(Path(out.plan))
        side["plan"] = out.plan
    if out.matte is not None:  # frame by frame: a bar of its own
        review.write_matte(plan, out.matte, settings=request.render, start=request.start, end=request.end,
                           rebase=request.ranged, src=request.source, overwrite=request.overwrite, progress=progress)
        written.append(Path(out.matte))
        side["matte"] = out.matte
    # A contact sheet decodes its crops and a report hashes the files: a second or more each, one step each.
    review.expect(progress, "side files", (out.contact_sheet is not None) + (audit is not None))
    if out.contact_sheet is not None:
        review.write_contact_sheet(plan, out.contact_sheet, src=request.source, start=request.start,
                                   end=request.end, info=info)
        written.append(Path(out.contact_sheet))
        side["contact_sheet"] = out.contact_sheet
        if progress:
            progress("side files", 1)
    if audit is not None:
        # Added to ``written`` only once finished: a report that says the input changed meanwhile
        # (ProcessingError) stays, while the outputs it describes go.
        audit.finish(plan, out.video, side_files=side, result=result)  # type: ignore[attr-defined]
        assert out.report is not None
        written += [Path(out.report), Path(out.report).with_suffix(".html")]
        if progress:
            progress("side files", 1)


def blur_video(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    targets: References | None = None,
    keep: References | None = None,
    all_faces: bool = False,
    tolerance: float | None = None,
    mask_unsure: bool = True,
    analysis: AnalysisSettings | str = "balanced",
    render_settings: RenderSettings = RenderSettings(),
    strict_reference: bool = False,
    overwrite: bool = False,
    plan_path: str | os.PathLike | None = None,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
) -> Result:
    """Mask ``targets`` (or everyone but ``keep``, or ``all_faces``) in ``src``; write ``dst``.

    A thin wrapper over :func:`run` for library users. ``dst`` defaults to
    ``video.blurred.mp4`` beside ``video.mp4``. Exactly one of ``targets``, ``keep`` and
    ``all_faces`` must be given. ``analysis``: a preset name (``fast``, ``balanced``,
    ``thorough``) or :class:`AnalysisSettings`. ``plan_path``: also save the plan there.
    ``info``: ``src``'s probe, when the caller has it: the file is then probed nowhere else.

    Raises:
        InputError: bad combination of options, unusable video or reference.
        OutputError: ``dst`` cannot be written, or not in the requested codec (checked
            before the analysis, which may take long).
    """
    who = Who.from_args(targets, keep, all_faces)
    analysis = preset(analysis) if isinstance(analysis, str) else analysis
    dst = Path(dst) if dst is not None else media.default_output_path(src)
    request = Request(
        source=src, outputs=Outputs(video=dst, plan=plan_path), who=who, analysis=analysis, tolerance=tolerance,
        mask_unsure=mask_unsure, strict_reference=strict_reference, render=render_settings, overwrite=overwrite,
    )
    return run(request, progress, source=VideoSource(src, info))
