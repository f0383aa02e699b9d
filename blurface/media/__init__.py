"""Probe, decode and re-encode video files with PyAV.

This package is the only place that imports :mod:`av`. Its modules follow the stages:

* ``probing``: :func:`probe` reads what the rest of blurface needs to know about an input
  (:class:`~blurface.types.VideoInfo`) and refuses anything that is not a video.
* ``decode``: :func:`iter_frames` decodes the first video stream into BGR (or RGB) arrays
  in display orientation, optionally downscaled by swscale for analysis;
  :func:`frame_times` and :func:`frame_at` read timestamps and single frames.
* ``outputs``: :class:`EncodeSettings`, :func:`check_output`, :func:`check_side_output`, :func:`default_output_path`
  and :func:`cleanup_stale_temps`: output paths and temporary files.
* ``tags``: :func:`read_tags` and the metadata :mod:`blurface.metadata` lets through.
* ``remux``: every stream other than the video, copied or converted.
* ``native``: :func:`source_format` and :func:`output_format` (the input's own format),
  and frames built in it with the masks drawn into their planes.
* ``encode``: :func:`transcode` re-encodes an input, masked, and copies its other streams.
* ``clips``: :class:`ClipWriter` and :func:`copy_video_range` for previews, excerpts, mattes.
* ``common``: the helpers the modules above share (plane views, swscale flags, opening
  inputs, demuxing, temporary files); internal to this package.

Callers use the names re-exported here (``media.probe``, ``media.transcode``, ...); the
modules' other public names are for the package itself (and its tests), not an API.

Timing rule, everywhere: timestamps are copied, never regenerated. Video frames
keep their source pts in the source stream's time base (so variable frame rates
and a video start offset, e.g. an MP4 edit list, survive); copied packets keep
their pts/dts, rescaled by the muxer to the output stream's time base.
"""

from __future__ import annotations

from .clips import MATTE_CODECS, ClipCodec, ClipWriter, copy_video_range
from .decode import frame_at, frame_times, iter_frames
from .encode import transcode
from .native import FrameMasks, output_format, source_format
from .outputs import (
    OUTPUT_FORMATS,
    EncodeSettings,
    check_output,
    check_side_output,
    cleanup_stale_temps,
    default_output_path,
)
from .probing import VIDEO_EXTENSIONS, NotVideoError, looks_like_video, probe
from .tags import read_tags

__all__ = [
    "MATTE_CODECS",
    "OUTPUT_FORMATS",
    "VIDEO_EXTENSIONS",
    "ClipCodec",
    "ClipWriter",
    "EncodeSettings",
    "FrameMasks",
    "NotVideoError",
    "check_output",
    "check_side_output",
    "cleanup_stale_temps",
    "copy_video_range",
    "default_output_path",
    "frame_at",
    "frame_times",
    "iter_frames",
    "looks_like_video",
    "output_format",
    "probe",
    "read_tags",
    "source_format",
    "transcode",
]
