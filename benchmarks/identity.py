"""How well each embedder tells people apart: on the shared clip's labelled faces and on the shared photos.

    python benchmarks/identity.py                      # sface and dlib, the tables of docs/identity.md
    python benchmarks/identity.py --embedders sface

Every labelled face of ``../shared/media/hamilton_clip.mp4`` (its truth file) is found
by CenterFace on its frame at full size (the detection overlapping the truth box),
embedded with its landmarks, and compared with reference photos (other photos, never
clip crops) by the gallery's own rule, the median over a person's photos. Printed:

- photos: the largest distance between two photos of one person and the smallest
  between two people's;
- per reference set: the target's faces (min/median/max), the closest face of anyone
  else, the gap between them, and the faces on the wrong side of the best single
  threshold and of the embedder's own tolerance + unsure band;
- within the clip: one person's faces against each other, and against everyone else's;
- the CPU time per face (one thread, this machine).

No timed asserts; nothing here is tuned: it reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "media"

# Photos of one face each, and who is in them.
PHOTO_PEOPLE = {
    "alex_lacamoire": "alex", "lin_manuel_miranda": "lin", "obama": "obama", "biden": "biden",
    "kit_harington": "kit", "rose_leslie": "rose",
}
TWO_FACES = {"two_people", "obama_and_biden", "kit_with_rose"}
REFERENCE_SETS = {
    "lin_manuel_miranda.png": ("lin", ["lin_manuel_miranda.png"]),
    "obama.jpg": ("obama", ["obama.jpg"]),
    "obama.jpg + obama_2.jpg": ("obama", ["obama.jpg", "obama_2.jpg"]),
    "4 photos of Obama": ("obama", ["obama.jpg", "obama_2.jpg", "obama_3.jpg", "obama_partial_face.jpg"]),
    "2 photos of Alex (profile in the clip)": ("alex", ["alex_lacamoire.png", "alex_lacamoire_2.jpg"]),
}


def _person(stem: str) -> str | None:
    return next((who for prefix, who in PHOTO_PEOPLE.items() if stem.startswith(prefix)), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--embedders", default="sface,dlib", help="comma-separated (default sface,dlib)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if not (SHARED / "hamilton_clip.mp4").is_file():
        print(f"the shared clip is not in {SHARED}", file=sys.stderr)
        return 2

    import av
    import cv2

    from blurface.boxes import iou_matrix
    from blurface.detectors import make_detector
    from blurface.embedders import make_embedder

    detector = make_detector(threshold=0.3)
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    embedders = {n: make_embedder(n) for n in names}
    results: dict = {}

    photos = {}
    for path in sorted(SHARED.iterdir()):
        who = _person(path.stem)
        if path.suffix.lower() not in (".jpg", ".png") or who is None or path.stem in TWO_FACES:
            continue
        image = cv2.imread(str(path))
        faces = detector.detect(image, scale=min(1.0, 800 / max(image.shape[:2])))
        i = int(np.argmax(faces.width))
        photos[path.name] = (who, image, faces[i])
    truth = json.loads((SHARED / "hamilton_truth.json").read_text())["frames"]
    clip_faces = []  # (frame, who, image crop source, Faces row)
    with av.open(str(SHARED / "hamilton_clip.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= len(truth) or not truth[index]:
                continue
            image = frame.to_ndarray(format="bgr24")
            found = detector.detect(image, scale=1.0)
            for face in truth[index]:
                if len(found) == 0:
                    continue
                iou = iou_matrix(np.array([face["box"]], np.float32), found.xyxy)[0]
                j = int(np.argmax(iou))
                if iou[j] >= 0.3:
                    clip_faces.append((index, face["who"], image, found[j]))

    for name, embedder in embedders.items():
        out: dict = {"faces": len(clip_faces)}
        ref = {k: embedder.embed(img, f.xyxy, landmarks=f.landmarks)[0] for k, (_, img, f) in photos.items()}
        same, diff = [], []
        for (a, ea), (b, eb) in itertools.combinations(ref.items(), 2):
            (same if photos[a][0] == photos[b][0] else diff).append(float(np.linalg.norm(ea - eb)))
        started = time.process_time()
        vecs = np.stack([embedder.embed(img, f.xyxy, landmarks=f.landmarks)[0] for _, _, img, f in clip_faces])
        out["ms_per_face"] = round(1000 * (time.process_time() - started) / max(1, len(clip_faces)), 1)
        who = np.array([w for _, w, _, _ in clip_faces])
        print(f"\n## {name} ({out['ms_per_face']} ms CPU a face, {len(clip_faces)} labelled faces, "
              f"tolerance {embedder.tolerance}, unsure to {embedder.tolerance + embedder.unsure_margin:.2f})\n")
        print(f"photos: one person at most {max(same):.3f} apart ({len(same)} pairs), "
              f"two people at least {min(diff):.3f} ({len(diff)} pairs)\n")
        out["photos"] = {"same_max": max(same), "different_min": min(diff)}
        print("| references | target | target faces min/median/max | closest other face | gap | "
              "wrong at best threshold | target faces past the unsure band | others within tolerance + band |")
        print("|---|---|---|---|---|---|---|---|")
        for label, (target, files) in REFERENCE_SETS.items():
            refs = np.stack([ref[f] for f in files])
            d = np.median(np.linalg.norm(vecs[:, None, :] - refs[None], axis=2), axis=1)
            t, o = d[who == target], d[who != target]
            closest = who[who != target][int(np.argmin(o))]
            cuts = np.sort(d)
            wrong = min(int((t > c).sum() + (o <= c).sum()) for c in cuts)
            band = embedder.tolerance + embedder.unsure_margin
            print(f"| {label} | {target} | {t.min():.2f}/{np.median(t):.2f}/{t.max():.2f} | {o.min():.2f} ({closest}) | "
                  f"{o.min() - t.max():+.2f} | {wrong}/{len(d)} | {int((t > band).sum())}/{len(t)} | {int((o <= band).sum())}/{len(o)} |")
            out[label] = {"target": [float(t.min()), float(np.median(t)), float(t.max())], "other_min": float(o.min()),
                          "wrong_at_best": wrong}
        dist = np.linalg.norm(vecs[:, None] - vecs[None], axis=2)
        print("\n| person in the clip | faces | most apart within | closest to anyone else |\n|---|---|---|---|")
        for person in sorted(set(who)):
            m = who == person
            print(f"| {person} | {int(m.sum())} | {dist[np.ix_(m, m)].max():.2f} | {dist[np.ix_(m, ~m)].min():.2f} |")
        results[name] = out
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
