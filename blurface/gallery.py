"""Reference people: build from photos or folders, save and load as ``.npz``, measure distances.

A gallery holds face embeddings, which are biometric data. blurface stores them
only where the user asks (``blurface enroll ... -o FILE.npz``), never logs them,
and makes no network access.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .embedding import person_distances
from .faces import FaceEngine
from .files import write_atomically
from .plan import MAX_NAME
from .photos import check_photo_size
from .types import EMBEDDING_DIM, Faces, GalleryError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# 2: galleries record the embedder that made them (version 1 ones were all dlib's).
GALLERY_VERSION = 2
# A face narrower than this gives an embedding too noisy to match on.
MIN_REFERENCE_FACE_PX = 40
# Large photos are shrunk before detection: faces in them are big, and HOG's cost grows with pixels.
_DETECT_MAX_SIDE = 800
# Detector score above which a face in a reference photo is taken as certain.
_SURE_SCORE = 0.5
# Jittered copies averaged per reference face (dlib; SFace ignores it): 5x the cost of one
# embedding, paid once per photo.
_REFERENCE_JITTERS = 5
# Sanity bounds for loaded files, so a hostile .npz cannot make us allocate without limit.
_MAX_PEOPLE = 1000
_MAX_EMBEDDINGS = 100_000


@dataclass
class Person:
    """One reference person.

    Attributes:
        name: label used in plans and reports (file or folder stem by default).
        embeddings: ``(m, 128)`` float32, one per reference photo.
        sources: the photo (or gallery) each embedding came from.
    """

    name: str
    embeddings: np.ndarray
    sources: list[str]


def embedder_tag(embedder: object) -> str:
    """``"name/version"`` of an embedder: vectors with different tags live in different spaces."""
    return f"{getattr(embedder, 'name', '?')}/{getattr(embedder, 'version', '?')}"


class Gallery:
    """An ordered set of :class:`Person`; distances are the median over a person's photos.

    Attributes:
        embedder: the :func:`embedder_tag` of the embedder that made every vector here
            (``None`` for an empty gallery).
    """

    def __init__(self, people: list[Person] | None = None, *, embedder: str | None = None) -> None:
        self.people: list[Person] = list(people or [])
        self.embedder = embedder

    def __len__(self) -> int:
        return len(self.people)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.people]

    def extend(self, other: Gallery) -> None:
        """Add ``other``'s people.

        Raises:
            GalleryError: ``other`` was made by another embedder (its distances would mean nothing here).
        """
        if other.people and self.embedder is not None and other.embedder != self.embedder:
            raise GalleryError(f"cannot mix galleries made by {self.embedder} and {other.embedder}: "
                               "run 'blurface enroll' again from the photos")
        self.people.extend(other.people)
        self.embedder = self.embedder or other.embedder

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Distance of each embedding to each person: the median over the person's photos.

        See :func:`blurface.embedding.person_distances` for why the median.

        Args:
            embeddings: ``(n, 128)`` float32.

        Returns:
            ``(n, P)`` float32 distances to each person, in gallery order.
        """
        return person_distances(embeddings, [p.embeddings for p in self.people])

    # ----- building -------------------------------------------------------------------------

    @classmethod
    def from_paths(
        cls, paths: list[str | os.PathLike], engine: FaceEngine, *, strict: bool = False
    ) -> Gallery:
        """One person per path: a photo, a folder of photos, or a saved ``.npz`` gallery.

        Several photos of one person (a folder) match better than one: each adds a
        pose or lighting the video may show.

        Raises:
            GalleryError: missing or unreadable file, a photo with no face, an empty
                folder, a bad ``.npz`` or one made by another embedder than ``engine``'s,
                or (``strict``) a photo with several faces.
        """
        tag = embedder_tag(engine.embedder)
        gallery = cls(embedder=tag)
        for path in paths:
            path = Path(path)
            if path.suffix.lower() == ".npz":
                loaded = cls.load(path)
                if loaded.embedder != tag:
                    raise GalleryError(
                        f"gallery {str(path)!r} was made by the {loaded.embedder} embedder and this run uses {tag}: "
                        f"their distances cannot be compared; run 'blurface enroll' again from the photos"
                        + (" (or add --embedder dlib)" if loaded.embedder and loaded.embedder.startswith("dlib/") else "")
                    )
                gallery.extend(loaded)
            else:
                gallery.people.append(person_from_photos(path, engine, strict=strict))
        return gallery

    # ----- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write a plain numeric ``.npz`` (no pickle): names, embeddings, and which person each row is."""
        if not self.people:
            raise GalleryError("cannot save an empty gallery: give at least one photo with a face")
        for name in self.names:
            _check_name(name, path)
        embeddings = np.concatenate([p.embeddings for p in self.people]).astype(np.float32)
        person = np.concatenate([np.full(len(p.embeddings), i, np.int32) for i, p in enumerate(self.people)])
        def write(tmp: Path) -> None:
            # A file object, so np.savez does not append ".npz" to the name.
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    version=np.int32(GALLERY_VERSION),
                    embedder=np.array(self.embedder or "", dtype=np.str_),
                    names=np.array(self.names, dtype=np.str_),
                    embeddings=embeddings,
                    person=person,
                )

        write_atomically(path, write, what="gallery", error=GalleryError)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        """Load and validate a gallery written by :meth:`save`.

        Raises:
            GalleryError: missing, not an npz, pickled objects, wrong keys, shapes or dtypes,
                or made by an older blurface that did not record its embedder.
        """
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"gallery {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = [k for k in ("version", "embedder", "names", "embeddings", "person") if k in data.files]
                for key in keys:
                    _check_array_size(data, key, path)
                arrays = {k: data[k] for k in keys}
        except GalleryError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError) as e:
            raise GalleryError(f"gallery {str(path)!r} is not a blurface .npz gallery ({e})") from e
        except Exception as e:  # noqa: BLE001 - zlib and zipfile raise more kinds on damaged data
            raise GalleryError(f"gallery {str(path)!r} is damaged: {type(e).__name__}: {e}") from e
        missing = {"version", "names", "embeddings", "person"} - set(arrays)
        if missing:
            raise GalleryError(f"gallery {str(path)!r} lacks {sorted(missing)}: make it with 'blurface enroll'")
        names, emb, person, version = arrays["names"], arrays["embeddings"], arrays["person"], arrays["version"]
        if version.shape != () or version.dtype.kind not in "iu":
            raise GalleryError(f"gallery {str(path)!r}: 'version' must be one integer, got {version.dtype} {version.shape}")
        if int(version) == 1:
            # Version 1 galleries hold dlib vectors and do not say so: never compared silently.
            raise GalleryError(
                f"gallery {str(path)!r} was made by an older blurface with the dlib embedder: "
                "run 'blurface enroll' again from the photos"
            )
        if int(version) != GALLERY_VERSION:
            raise GalleryError(f"gallery {str(path)!r} has version {int(version)}, expected {GALLERY_VERSION}")
        tag = arrays.get("embedder")
        if tag is None or tag.dtype.kind != "U" or tag.shape != () or not 0 < len(str(tag)) <= 100:
            raise GalleryError(f"gallery {str(path)!r}: 'embedder' must name the embedder that made it")
        if names.dtype.kind != "U" or names.ndim != 1 or not 0 < len(names) <= _MAX_PEOPLE:
            raise GalleryError(f"gallery {str(path)!r}: 'names' must be 1..{_MAX_PEOPLE} strings")
        for name in names:
            _check_name(str(name), path)
        if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[1] != EMBEDDING_DIM or not 0 < len(emb) <= _MAX_EMBEDDINGS:
            raise GalleryError(
                f"gallery {str(path)!r}: 'embeddings' must be float32 (n, {EMBEDDING_DIM}), got {emb.dtype} {emb.shape}"
            )
        if not np.isfinite(emb).all():
            raise GalleryError(f"gallery {str(path)!r}: 'embeddings' holds NaN or infinite values")
        if person.dtype.kind not in "iu" or person.shape != (len(emb),) or person.min() < 0 or person.max() >= len(names):
            raise GalleryError(f"gallery {str(path)!r}: 'person' must index 'names' once per embedding")
        people = []
        for i, name in enumerate(names):
            rows = emb[person == i]
            if len(rows) == 0:
                raise GalleryError(f"gallery {str(path)!r}: person {str(name)!r} has no embedding")
            people.append(Person(str(name), rows.copy(), [str(path)] * len(rows)))
        return cls(people, embedder=str(tag))


def _check_name(name: str, path: str | os.PathLike) -> None:
    """A person's name goes into plans, whose loader refuses longer ones: refuse it here first."""
    if not 0 < len(name) <= MAX_NAME:
        raise GalleryError(f"gallery {str(path)!r}: the name {name[:40]!r}... has {len(name)} characters: "
                           f"use 1 to {MAX_NAME} (enroll --name)")


# The largest array a gallery may hold (100 000 embeddings of 128 float32 are 51 MB).
_MAX_ARRAY_BYTES = 64 * 1024 * 1024


def _check_array_size(data: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Refuse an array whose header promises more than :data:`_MAX_ARRAY_BYTES`, before reading it.

    ``np.load`` allocates what the header says, so a hostile file of a few bytes could
    otherwise ask for terabytes.
    """
    with data.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    size = dtype.itemsize * math.prod(shape)
    if size > _MAX_ARRAY_BYTES:
        raise GalleryError(
            f"gallery {str(path)!r}: '{key}' claims {size} bytes, more than a gallery holds: the file is damaged"
        )


def _list_photos(path: Path) -> list[Path]:
    if path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise GalleryError(
                f"folder {str(path)!r} has no photos ({', '.join(sorted(IMAGE_SUFFIXES))}): add photos of the person"
            )
        return photos
    if not path.exists():
        raise GalleryError(f"reference photo {str(path)!r} does not exist")
    return [path]


def check_references(paths: list[str | os.PathLike]) -> None:
    """Refuse missing photos, empty folders and photos too large to decode, before any work.

    Reads file headers only (galleries are checked when loaded).

    Raises:
        GalleryError: naming the photo and the problem.
    """
    for path in map(Path, paths):
        if path.suffix.lower() == ".npz":
            if not path.is_file():
                raise GalleryError(f"gallery {str(path)!r} does not exist")
            continue
        for photo in _list_photos(path):
            problem = check_photo_size(photo)
            if problem is not None:
                raise GalleryError(f"reference photo {str(photo)!r} {problem}")


def _read_photo(photo: Path) -> np.ndarray | None:
    """The photo as BGR, its size checked from the header first (see :mod:`blurface.photos`)."""
    problem = check_photo_size(photo)
    if problem is not None:
        raise GalleryError(f"reference photo {str(photo)!r} {problem}")
    return cv2.imread(str(photo), cv2.IMREAD_COLOR)


def person_from_photos(path: str | os.PathLike, engine: FaceEngine, *, strict: bool = False) -> Person:
    """Embed the face in a photo, or in each photo of a folder, as one person.

    Raises:
        GalleryError: see :meth:`Gallery.from_paths`.
    """
    path = Path(path)
    embeddings = []
    sources = []
    for photo in _list_photos(path):
        image = _read_photo(photo)
        if image is None:
            raise GalleryError(f"reference photo {str(photo)!r} cannot be read as an image (jpg, png, ...)")
        face = _reference_face(image, photo, engine, strict=strict)
        embeddings.append(engine.embed(image, face.xyxy, landmarks=face.landmarks, jitters=_REFERENCE_JITTERS)[0])
        sources.append(str(photo))
    return Person(path.stem, np.stack(embeddings).astype(np.float32), sources)


def person_from_paths(
    paths: list[str | os.PathLike], engine: FaceEngine, *, name: str, strict: bool = False
) -> Person:
    """All of ``paths`` (photos and folders of photos) as one person called ``name``.

    Raises:
        GalleryError: see :meth:`Gallery.from_paths`.
    """
    parts = [person_from_photos(p, engine, strict=strict) for p in paths]
    return Person(name, np.concatenate([p.embeddings for p in parts]), [s for p in parts for s in p.sources])


def _reference_face(image: np.ndarray, photo: Path, engine: FaceEngine, *, strict: bool) -> Faces:
    """The photo's one face (the largest confident one), as a one-row :class:`Faces` with its landmarks."""
    faces = detect_reference_faces(image, engine)
    if len(faces) == 0:
        raise GalleryError(f"no face found in reference photo {str(photo)!r}: use a photo where the face is clearly visible")
    order = np.argsort(-faces.width)
    if len(faces) > 1:
        if strict:
            raise GalleryError(
                f"reference photo {str(photo)!r} shows {len(faces)} faces: crop it to one person "
                "(or drop --strict-reference to use the largest face)"
            )
        log.warning("reference photo %s shows %d faces; using the largest", photo, len(faces))
    face = faces[int(order[0])]
    box = face.xyxy[0]
    if box[2] - box[0] < MIN_REFERENCE_FACE_PX:
        raise GalleryError(
            f"the face in reference photo {str(photo)!r} is only {int(box[2] - box[0])} px wide: "
            f"use a photo where it is at least {MIN_REFERENCE_FACE_PX} px"
        )
    return face


def detect_reference_faces(image: np.ndarray, engine: FaceEngine) -> Faces:
    """Faces in a still photo, looked for with the engine's detector at up to 800 px on the long side.

    Only confident faces (score >= 0.5) count when there are any: a reference photo is
    chosen by a person, and a face-like pattern in it (seen on the astronaut's suit with
    HOG) must not become "the largest face".
    """
    h, w = image.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    faces = engine.detect(image, scale=scale)
    sure = faces[faces.score >= _SURE_SCORE]
    return sure if len(sure) else faces
