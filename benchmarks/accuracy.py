"""Leak and collateral of blurface and of the naive per-frame baseline, judged from pixels.

    python benchmarks/accuracy.py                # hamilton clip + a synthetic clip
    python benchmarks/accuracy.py --quick        # skip the slow --thorough and Obama runs

For each case it prints: the target's visible frames, leaked frames (target box not
masked in the output), the longest run of leaked frames, collateral (frames with
other people where one of them was masked), masked frames per person, and wall time.
Needs ../shared/media (the hamilton clip, its truth and the reference photos).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from baseline import naive_blur  # noqa: E402
from synth import TARGET, TARGET_REFERENCE, make_clip  # noqa: E402

from blurface.evaluate import load_truth, score  # noqa: E402
from blurface.faces import FaceEngine  # noqa: E402
from blurface.gallery import Gallery, person_from_paths  # noqa: E402
from blurface.pipeline import blur_video  # noqa: E402

SHARED = REPO.parent / "shared" / "media"
OBAMA_PHOTOS = ["obama.jpg", "obama_2.jpg", "obama_3.jpg", "obama_and_biden.jpg", "obama_partial_face.jpg"]


@dataclass
class Case:
    name: str
    clip: Path
    truth: list[list[dict]]
    targets: list[str]  # truth names
    photos: list[Path]  # one person's photos
    method: str  # "blurface", "blurface --thorough", "baseline"


def run_case(case: Case, workdir: Path, engine: FaceEngine) -> dict:
    out = workdir / f"{case.name.replace(' ', '_').replace('/', '_')}_{case.method.replace(' ', '').replace('-', '')}.mp4"
    started = time.perf_counter()
    if case.method == "baseline":
        naive_blur(case.clip, out, _one_person(case.photos, engine))
    else:
        blur_video(
            case.clip, out, targets=_one_person(case.photos, engine), overwrite=True,
            analysis="thorough" if "thorough" in case.method else "balanced",
            plan_path=out.with_suffix(".plan.json"),
        )
    seconds = time.perf_counter() - started
    acc = score(case.clip, out, case.truth, case.targets)
    return {"case": case.name, "method": case.method, "seconds": round(seconds, 1), **acc.summary(), "output": str(out)}


def _one_person(photos: list[Path], engine: FaceEngine) -> Gallery:
    """All photos as one person (what `blurface enroll` does)."""
    return Gallery([person_from_paths(list(photos), engine, name=photos[0].stem)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the default blurface and baseline on Lin and synthetic")
    p.add_argument("--json", help="also write the rows as JSON")
    p.add_argument("--keep-outputs", metavar="DIR", help="write outputs here instead of a temp folder")
    args = p.parse_args()
    if not (SHARED / "hamilton_clip.mp4").is_file():
        print(f"needs {SHARED}/hamilton_clip.mp4 (the shared media)", file=sys.stderr)
        return 2
    engine = FaceEngine()
    hamilton = SHARED / "hamilton_clip.mp4"
    truth = load_truth(SHARED / "hamilton_truth.json")
    with tempfile.TemporaryDirectory(prefix="blurface-acc-") as tmp:
        workdir = Path(args.keep_outputs) if args.keep_outputs else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        synth_clip = workdir / "synthetic.mp4"
        synth_truth = make_clip(synth_clip, frames=150)
        lin = [SHARED / "lin_manuel_miranda.png"]
        obama1 = [SHARED / "obama.jpg"]
        obama_all = [SHARED / n for n in OBAMA_PHOTOS]
        cases = []
        methods = ["blurface", "baseline"] if args.quick else ["blurface", "blurface --thorough", "baseline"]
        for m in methods:
            cases.append(Case("hamilton lin", hamilton, truth, ["lin"], lin, m))
            cases.append(Case("synthetic rose", synth_clip, synth_truth, [TARGET], [SHARED / TARGET_REFERENCE], m))
            if not args.quick:
                cases.append(Case("hamilton obama (1 photo)", hamilton, truth, ["obama"], obama1, m))
                cases.append(Case("hamilton obama (5 photos)", hamilton, truth, ["obama"], obama_all, m))
        rows = []
        header = f"{'case':28} {'method':22} {'leak':>12} {'longest':>7} {'collateral':>12} {'seconds':>7}  masked per person"
        print(header)
        print("-" * len(header))
        for case in cases:
            row = run_case(case, workdir, engine)
            rows.append(row)
            print(
                f"{row['case']:28} {row['method']:22} "
                f"{row['leaked_frames']:>4}/{row['target_visible_frames']:<4}{row['leak_rate']:>4.0%} "
                f"{row['longest_leak_run']:>7} "
                f"{row['collateral_frames']:>4}/{row['other_visible_frames']:<4}{row['collateral_rate']:>4.0%} "
                f"{row['seconds']:>7}  {', '.join(f'{k} {v}' for k, v in row['masked_by_person'].items())}",
                flush=True,
            )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
