"""Which encoder, pixel format and settings the masked video gets: masters in, masters out.

An editor hands blurface a master (ProRes 422 HQ, 10-bit HLG HEVC from a phone, an
interlaced MPEG-2 archive file) and must be able to cut the result back into the same
timeline. So by default the output keeps the input's codec family and profile, bit depth,
chroma subsampling, colour tags, HDR mastering metadata and field order, wherever the
bundled FFmpeg has an encoder for it. Where it has none, the output falls back to H.264
at the closest depth and chroma, and :attr:`OutputFormat.fallback` holds the one line
that says so.

This module only decides; :mod:`blurface.media` reads the input and applies the
decision with PyAV (no PyAV here, so the policy is testable without media).

Quality (lossy codecs): chosen so the unmasked picture stays visually lossless, at
least 45 dB PSNR against the decoded input at its own bit depth (measured by
``tests/test_formats.py`` and ``benchmarks/formats.py``; the README lists the numbers):

* x264: CRF 18 (x264's own "visually lossless" point), in 8 and 10 bits.
* x265: CRF 18. x265's CRF scale runs about 4-6 steps "cheaper" than x264's; 18 keeps
  fine grain on 10-bit HDR, where banding is the first thing a grader sees.
* SVT-AV1: CRF 20 (of 63).
* libvpx-vp9: CRF 20 in constant-quality mode (``b:v 0``).
* MPEG-2: fixed quantiser 2 (``-q:v 2``), the broadcast-archive norm for near-transparent MPEG-2.
* ProRes and DNxHR are intra codecs with a rate fixed by their profile: the profile is kept.
* FFV1 is lossless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# FFmpeg's AVFieldOrder, as PyAV reports it on a codec context.
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
FIELD_ORDER_CODES = {name: code for code, name in FIELD_ORDERS.items()}

# --codec choices: family -> encoder.
CODEC_CHOICES: dict[str, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "av1": "libsvtav1",
    "prores": "prores_ks",
    "ffv1": "ffv1",
}

# Input codec (FFmpeg's canonical name) -> the encoder that keeps its family.
KEEP_ENCODERS: dict[str, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "prores": "prores_ks",
    "dnxhd": "dnxhd",
    "av1": "libsvtav1",
    "vp9": "libvpx-vp9",
    "mpeg2video": "mpeg2video",
    "ffv1": "ffv1",
}

# Encoder -> codec family (FFmpeg's canonical codec name) it writes.
FAMILY = {
    "libx264": "h264",
    "libx265": "hevc",
    "prores_ks": "prores",
    "dnxhd": "dnxhd",
    "libsvtav1": "av1",
    "libvpx-vp9": "vp9",
    "mpeg2video": "mpeg2video",
    "ffv1": "ffv1",
}

DEFAULT_CRF = {"libx264": 18, "libx265": 18, "libsvtav1": 20, "libvpx-vp9": 20}
DEFAULT_PRESET = "veryfast"
# x264-style preset names -> SVT-AV1 preset numbers (0 slowest .. 13 fastest) and
# libvpx-vp9 cpu-used (0 slowest .. 8 fastest), so one --preset speaks for all.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
_SVT_PRESETS = dict(zip(X264_PRESETS, (12, 11, 10, 9, 8, 6, 4, 3, 2, 1), strict=True))
_VP9_SPEED = dict(zip(X264_PRESETS, (8, 7, 6, 5, 4, 3, 2, 1, 0, 0), strict=True))
MPEG2_QSCALE = 2
_QP2LAMBDA = 118  # FFmpeg's FF_QP2LAMBDA: global_quality is a quantiser times this

# ProRes: FFmpeg's decoder profile names -> prores_ks "profile" values.
_PRORES_PROFILES = {"proxy": "0", "lt": "1", "standard": "2", "hq": "3", "4444": "4", "xq": "5"}
_PRORES_PIX = {"4": "yuv444p10le", "5": "yuv444p10le"}
# DNxHR: FFmpeg's decoder profile names -> dnxhd "profile" values.
_DNX_PROFILES = {
    "dnxhr lb": "dnxhr_lb",
    "dnxhr sq": "dnxhr_sq",
    "dnxhr hq": "dnxhr_hq",
    "dnxhr hqx": "dnxhr_hqx",
    "dnxhr 444": "dnxhr_444",
}
# x264 keeps Main when asked; High and its 10-bit/4:2:2/4:4:4 variants follow from the pix_fmt.
# (Constrained) Baseline becomes High: Baseline cannot be lossless (--lossless, --crf 0) and
# costs quality at equal CRF, and every decoder in use today plays High.
_X264_PROFILES = {"main": "main"}


@dataclass(frozen=True)
class PixelFormat:
    """What the policy needs to know about a pixel format (read from FFmpeg by media).

    ``shift_w``/``shift_h``: chroma subsampling as log2 (4:2:0 is 1, 1; 4:2:2 is 1, 0).
    """

    name: str
    depth: int
    shift_w: int = 0
    shift_h: int = 0
    rgb: bool = False
    alpha: bool = False
    gray: bool = False


@dataclass(frozen=True)
class Mastering:
    """HDR mastering display colour volume (SMPTE ST 2086) and content light level (CTA-861.3).

    Chromaticities in units of 0.00002, luminance in 0.0001 cd/m2: the units x264, x265
    and the HEVC SEI use. ``None``: the input did not carry that part.
    """

    primaries: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None  # G, B, R (x, y)
    white_point: tuple[int, int] | None = None
    luminance: tuple[int, int] | None = None  # (max, min)
    max_cll: int | None = None
    max_fall: int | None = None

    def display_string(self) -> str | None:
        """``G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)`` as x264 and x265 take it."""
        if self.primaries is None or self.white_point is None or self.luminance is None:
            return None
        (gx, gy), (bx, by), (rx, ry) = self.primaries
        wx, wy = self.white_point
        mx, mn = self.luminance
        return f"G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})L({mx},{mn})"

    def svt_display_string(self) -> str | None:
        """The same for SVT-AV1, which takes plain numbers (chromaticities, cd/m2)."""
        if self.primaries is None or self.white_point is None or self.luminance is None:
            return None
        f = lambda v: f"{v / 50000:.5f}"  # noqa: E731 - a one-line unit conversion
        (gx, gy), (bx, by), (rx, ry) = self.primaries
        wx, wy = self.white_point
        mx, mn = self.luminance
        return (f"G({f(gx)},{f(gy)})B({f(bx)},{f(by)})R({f(rx)},{f(ry)})WP({f(wx)},{f(wy)})"
                f"L({mx / 10000:.4f},{mn / 10000:.4f})")


@dataclass(frozen=True)
class SourceFormat:
    """The input video stream, as the policy sees it."""

    codec: str  # FFmpeg canonical name: h264, hevc, prores, ...
    profile: str | None
    pix: PixelFormat
    color_range: int = 0  # AVColorRange: 0 unspecified, 1 limited, 2 full
    color_primaries: int = 2  # 2 = unspecified
    color_trc: int = 2
    colorspace: int = 2
    field_order: str = "progressive"
    mastering: Mastering | None = None
    bit_rate: int | None = None

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")


@dataclass(frozen=True)
class Request:
    """What the user asked for (:class:`blurface.media.EncodeSettings` carries it).

    ``codec``: ``"auto"`` keeps the input's family; or a key of :data:`CODEC_CHOICES`.
    ``crf``/``preset``: ``None`` takes the encoder's default above.
    """

    codec: str = "auto"
    crf: int | None = None
    preset: str | None = None
    lossless: bool = False
    deinterlace: bool = False


@dataclass(frozen=True)
class OutputFormat:
    """The encoder and everything set on it.

    ``options``: the encoder's private options (PyAV ``stream.options``). ``flags``: the
    codec context flags to add (``ilme``/``ildct`` for field coding). ``field_order``:
    what the output stream is tagged with. ``fallback``: the one line telling the user
    the input's format could not be kept, or ``None``.
    """

    encoder: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    flags: tuple[str, ...] = ()
    color_range: int = 1
    color_primaries: int = 2
    color_trc: int = 2
    colorspace: int = 2
    field_order: str = "progressive"
    deinterlace: bool = False
    fallback: str | None = None

    @property
    def family(self) -> str:
        return FAMILY.get(self.encoder, self.encoder)

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")


# (pix_fmt name, encoder) -> PixelFormat, filled by media; the policy asks through these callables.
EncoderFormats = Callable[[str], frozenset[str] | None]  # encoder -> its pix_fmts, None: no such encoder
DescribePix = Callable[[str], PixelFormat]


# Muxer -> encoders whose streams it refuses (FFmpeg 8 as bundled by PyAV 18, tried one by one).
CONTAINER_REFUSES: dict[str, frozenset[str]] = {
    "mp4": frozenset({"prores_ks", "dnxhd"}),
    "mov": frozenset({"ffv1", "libvpx-vp9", "libsvtav1"}),
    "matroska": frozenset({"dnxhd"}),
}
_EXTENSIONS = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv"}


def choose(
    source: SourceFormat,
    request: Request,
    encoder_formats: EncoderFormats,
    describe: DescribePix,
    container: str | None = None,
) -> OutputFormat:
    """The output format for ``source`` under ``request``.

    Args:
        encoder_formats: pixel formats an encoder accepts (``None`` when the bundled
            FFmpeg lacks it).
        describe: a pixel format's depth and subsampling.
        container: the output muxer (``mp4``, ``mov``, ``matroska``); a family it cannot
            hold falls back to H.264 (``auto``), or is refused (an explicit ``codec``).

    Raises:
        ValueError: ``request.codec`` is unknown, a requested encoder is missing, or the
            container cannot hold it.
    """
    refused = CONTAINER_REFUSES.get(container or "", frozenset())
    if request.codec not in ("auto", *CODEC_CHOICES):
        raise ValueError(f"unknown codec {request.codec!r}: use auto or one of {', '.join(CODEC_CHOICES)}")
    fallback = None
    if request.lossless and request.codec in ("av1", "prores"):
        raise ValueError(f"--lossless works with --codec ffv1, h264 or hevc, not {request.codec}")
    if request.lossless and request.codec == "auto":
        # FFV1 where the container holds it (MKV, MP4); x264 at QP 0 in MOV.
        encoder = "ffv1" if "ffv1" not in refused else "libx264"
    elif request.codec != "auto":
        encoder = CODEC_CHOICES[request.codec]
        if encoder in refused:
            fits = [ext for name, ext in _EXTENSIONS.items() if encoder not in CONTAINER_REFUSES[name]]
            raise ValueError(f"--codec {request.codec} cannot go into a {_EXTENSIONS.get(container or '', container)} file: use a {' or '.join(fits)} output")
    else:
        encoder = KEEP_ENCODERS.get(source.codec, "")
        if encoder == "dnxhd" and (source.profile or "").lower() not in _DNX_PROFILES:
            # DNxHD (not HR) allows only a fixed table of sizes, rates and bit rates.
            encoder, why = "", "DNxHD (not DNxHR) can only be encoded at its fixed sizes and bit rates"
        elif not encoder:
            why = f"blurface writes no {source.codec} (it keeps H.264, HEVC, ProRes, DNxHR, AV1, VP9, MPEG-2, FFV1)"
        else:
            why = f"the bundled FFmpeg has no {encoder} encoder"
        if encoder and encoder_formats(encoder) is None:
            encoder = ""
        elif encoder in refused:
            fits = [ext for name, ext in _EXTENSIONS.items() if encoder not in CONTAINER_REFUSES[name]]
            why = f"the {container.upper() if container != 'matroska' else 'MKV'} container cannot hold it (use a {' or '.join(fits)} output to keep it)"
            encoder = ""
        if not encoder:
            encoder = "libx264"
            fallback = why
    formats = encoder_formats(encoder)
    if formats is None:
        raise ValueError(f"the bundled FFmpeg has no {encoder} encoder: choose another --codec")
    pix_fmt = _pixel_format(source, encoder, formats, describe)
    profile = None
    if encoder == "prores_ks":
        # ProRes keeps its profile; anything else asked to become ProRes is 422 HQ, or 4444 from 4:4:4.
        if source.codec == "prores":
            profile = _PRORES_PROFILES.get((source.profile or "").lower(), "3")
        else:
            profile = "4" if source.pix.shift_w == 0 and source.pix.shift_h == 0 and not source.pix.gray else "3"
        if profile in ("4", "5"):
            pix_fmt = "yuva444p10le" if source.pix.alpha else "yuv444p10le"
        else:
            pix_fmt = "yuv422p10le"
    if fallback is None and pix_fmt != _same_layout(source.pix.name) and request.codec == "auto":
        target = describe(pix_fmt)
        if (target.depth, target.shift_w, target.shift_h) != (source.pix.depth, source.pix.shift_w, source.pix.shift_h):
            # The family is kept, but this encoder cannot keep the depth or chroma (libvpx-vp9
            # here is 8-bit only; SVT-AV1 is 4:2:0 only): H.264 keeps them where it can.
            x264 = encoder_formats("libx264") or frozenset()
            alt = _pixel_format(source, "libx264", x264, describe)
            alt_pix = describe(alt)
            if (alt_pix.depth, alt_pix.shift_w, alt_pix.shift_h) == (source.pix.depth, source.pix.shift_w, source.pix.shift_h):
                fallback = f"{encoder} cannot encode {source.pix.name}"
                encoder, pix_fmt = "libx264", alt
    options, profile_opt = _quality(encoder, source, request, pix_fmt)
    if encoder == "prores_ks":
        profile_opt = profile
        options.update({"vendor": "apl0"})
    elif encoder == "dnxhd":
        profile_opt = _DNX_PROFILES[(source.profile or "dnxhr hq").lower()] if source.codec == "dnxhd" else "dnxhr_hq"
        if profile_opt == "dnxhr_444" or describe(pix_fmt).shift_w == 0:
            profile_opt, pix_fmt = "dnxhr_444", "yuv444p10le"
        elif profile_opt == "dnxhr_hqx":
            pix_fmt = "yuv422p10le"
        else:
            pix_fmt = "yuv422p"
    if profile_opt is not None:
        options["profile"] = profile_opt
    field_order = "progressive" if request.deinterlace or not source.interlaced else source.field_order
    flags: tuple[str, ...] = ()
    if field_order != "progressive":
        if encoder in ("libx264", "mpeg2video"):
            flags = ("ilme", "ildct")
        elif encoder in ("prores_ks", "dnxhd"):
            flags = ("ildct",)
    _hdr_options(encoder, source.mastering, options)
    line = None
    if fallback is not None:
        line = (f"{source.codec} {source.pix.name} input: {fallback}; writing H.264 {pix_fmt} instead "
                "(use --codec to choose another)")
    return OutputFormat(
        encoder=encoder,
        pix_fmt=pix_fmt,
        options=options,
        profile=profile_opt,
        flags=flags,
        color_range=source.color_range if source.color_range in (1, 2) else (2 if source.pix.rgb else 1),
        color_primaries=source.color_primaries,
        color_trc=source.color_trc,
        colorspace=source.colorspace,
        field_order=field_order,
        deinterlace=request.deinterlace and source.interlaced,
        fallback=line,
    )


def _same_layout(name: str) -> str:
    """``yuvj420p`` is ``yuv420p`` with a full-range tag: the policy compares layouts."""
    return name.replace("yuvj", "yuv")


def _pixel_format(source: SourceFormat, encoder: str, formats: frozenset[str], describe: DescribePix) -> str:
    """The encoder's pixel format nearest the source's: same layout if it has it, else
    the nearest depth at or above the source's (never below if avoidable), then chroma."""
    name = _same_layout(source.pix.name)
    if name in formats:
        return name
    src = source.pix
    candidates = [describe(f) for f in formats if not f.startswith("yuvj") and f not in ("nv12", "nv16", "nv21", "nv20le")]
    candidates = [c for c in candidates if c.gray == src.gray or not src.gray] or candidates
    if not src.rgb:
        candidates = [c for c in candidates if not c.rgb] or candidates

    def cost(c: PixelFormat) -> tuple:
        depth = (0 if c.depth >= src.depth else 1, abs(c.depth - src.depth))
        chroma = (0 if (c.shift_w <= src.shift_w and c.shift_h <= src.shift_h) else 1,
                  abs(c.shift_w - src.shift_w) + abs(c.shift_h - src.shift_h))
        return (chroma[0], depth, chroma[1], c.alpha != src.alpha, c.rgb != src.rgb, c.name)

    return min(candidates, key=cost).name


def _quality(encoder: str, source: SourceFormat, request: Request, pix_fmt: str) -> tuple[dict[str, str], str | None]:
    options: dict[str, str] = {}
    profile = None
    preset = request.preset or DEFAULT_PRESET
    crf = request.crf if request.crf is not None else DEFAULT_CRF.get(encoder)
    if encoder == "libx264":
        if request.lossless:
            options.update({"qp": "0", "preset": preset})
        else:
            options.update({"crf": str(crf), "preset": preset})
        if source.codec == "h264" and pix_fmt in ("yuv420p", "yuvj420p") and not request.lossless and crf != 0:
            profile = _X264_PROFILES.get((source.profile or "").lower())
        options["udu_sei"] = "0"  # never copy a camera's user-data SEI into the new file
    elif encoder == "libx265":
        options.update({"crf": str(crf), "preset": preset})
        if request.lossless:
            options.pop("crf")
        options["udu_sei"] = "0"
        options["x265-params"] = "log-level=error" + (":lossless=1" if request.lossless else "")
    elif encoder == "libsvtav1":
        options.update({"crf": str(crf), "preset": str(_SVT_PRESETS.get(preset, 10))})
        options["svtav1-params"] = ""
    elif encoder == "libvpx-vp9":
        options.update({"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": str(_VP9_SPEED.get(preset, 6)),
                        "row-mt": "1"})
        if request.lossless:
            options["lossless"] = "1"
    elif encoder == "mpeg2video":
        options.update({"qmin": "1", "global_quality": str(MPEG2_QSCALE * _QP2LAMBDA), "flags": "+qscale"})
    elif encoder == "ffv1":
        # Version 3 with slices and per-slice CRCs: the archival choice (and multithreaded).
        options.update({"level": "3", "slices": "4", "slicecrc": "1"})
    return options, profile


def _hdr_options(encoder: str, mastering: Mastering | None, options: dict[str, str]) -> None:
    """Carry the mastering display and content light level into the encoder's bitstream.

    x264, x265 and SVT-AV1 take them as parameters and write the HEVC/H.264 SEI or AV1
    metadata OBUs. ProRes, DNxHR, FFV1, MPEG-2 and libvpx-vp9 have no place for them in
    the bitstream: only the container (the MOV ``mdcv``/``clli`` atoms, Matroska's
    colour elements) could hold them, and PyAV 18 cannot set a stream's side data.
    """
    if mastering is None:
        return
    display = mastering.display_string()
    cll = f"{mastering.max_cll or 0},{mastering.max_fall or 0}" if mastering.max_cll is not None else None
    if encoder == "libx265":
        parts = [options.get("x265-params", "")]
        if display:
            parts.append(f"master-display={display}")
        if cll:
            parts.append(f"max-cll={cll}")
        options["x265-params"] = ":".join(p for p in parts if p)
    elif encoder == "libx264":
        parts = []
        if display:
            parts.append(f"mastering-display={display}")
        if cll:
            parts.append(f"cll={cll}")
        if parts:
            options["x264-params"] = ":".join(parts)
    elif encoder == "libsvtav1":
        parts = [options.get("svtav1-params", "")]
        svt = mastering.svt_display_string()
        if svt:
            parts.append(f"mastering-display={svt}")
        if cll:
            parts.append(f"content-light={cll}")
        options["svtav1-params"] = ":".join(p for p in parts if p)


def parse_mastering(display: bytes | None, light: bytes | None) -> Mastering | None:
    """:class:`Mastering` from FFmpeg's side data structs (``AVMasteringDisplayMetadata``,
    ``AVContentLightMetadata``) as bytes, or ``None`` when neither is there."""
    import struct

    primaries = white = luminance = None
    if display is not None and len(display) >= 88:
        v = struct.unpack("<22i", display[:88])
        has_primaries, has_luminance = v[20], v[21]

        def q(num: int, den: int, unit: int) -> int:
            return round(num * unit / den) if den else 0

        if has_primaries:
            r = (q(v[0], v[1], 50000), q(v[2], v[3], 50000))
            g = (q(v[4], v[5], 50000), q(v[6], v[7], 50000))
            b = (q(v[8], v[9], 50000), q(v[10], v[11], 50000))
            primaries = (g, b, r)
            white = (q(v[12], v[13], 50000), q(v[14], v[15], 50000))
        if has_luminance:
            luminance = (q(v[18], v[19], 10000), q(v[16], v[17], 10000))
    cll = fall = None
    if light is not None and len(light) >= 8:
        cll, fall = struct.unpack("<2I", light[:8])
    if primaries is None and luminance is None and cll is None:
        return None
    return Mastering(primaries, white, luminance, cll, fall)

