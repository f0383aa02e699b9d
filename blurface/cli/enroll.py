"""``blurface enroll``: one person's reference photos as a reusable .npz gallery."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..text import printable
from .common import EXIT_OK, Parser, UsageError, add_common, add_embedder, check_side_file


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no gallery was written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(prog="blurface enroll", description="Save one person's reference photos as a reusable .npz gallery.")
    p.add_argument("photos", nargs="+", help="photos or folders of photos of ONE person")
    p.add_argument("-o", "--output", required=True, help="gallery file to write (.npz)")
    p.add_argument("--name", help="the person's name in plans and reports (default: the output's stem)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing gallery file")
    p.add_argument("--strict-reference", action="store_true", help="refuse photos with several faces")
    add_embedder(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..faces import FaceEngine
    from ..gallery import Gallery, check_references, person_from_paths

    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"blurface enroll: output {str(out)!r} must end in .npz")
    check_references(args.photos)  # inputs first
    if out.exists() and not args.overwrite:
        raise UsageError(f"blurface enroll: {str(out)!r} exists: use --overwrite to replace it")
    check_side_file(args.output, "--output", args, outputs=[])
    from ..embedders import make_embedder
    from ..gallery import embedder_tag

    engine = FaceEngine(embedder=make_embedder(args.embedder))
    person = person_from_paths(args.photos, engine, name=args.name or out.stem, strict=args.strict_reference)
    Gallery([person], embedder=embedder_tag(engine.embedder)).save(out)
    if not args.quiet:
        print(printable(f"wrote {out}: {person.name}, {len(person.embeddings)} reference face(s)"), file=sys.stderr)
    return EXIT_OK
