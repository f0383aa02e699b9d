"""Reference photos, folders and .npz galleries: good ones load, bad ones fail with a clear error."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from blurface.faces import FaceEngine
from blurface.gallery import Gallery, Person, person_from_photos
from blurface.types import GalleryError


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine()


def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def tiny_face_photo() -> np.ndarray:
    """A face about 37 px wide: findable, but too small to identify anyone by."""
    canvas = np.full((400, 400, 3), 90, np.uint8)
    canvas[100:210, 100:210] = cv2.resize(astronaut()[0:300, 100:400], (110, 110))
    return canvas


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), astronaut())
    return path


def test_photo_folder_and_npz_round_trip(tmp_path: Path, photo: Path, engine: FaceEngine) -> None:
    folder = tmp_path / "eileen"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut())
    cv2.imwrite(str(folder / "b.jpg"), cv2.flip(astronaut(), 1))
    (folder / "notes.txt").write_text("not a photo")
    gallery = Gallery.from_paths([photo, folder], engine)
    assert gallery.names == ["astronaut", "eileen"]
    assert [len(p.embeddings) for p in gallery.people] == [1, 2]
    # The same face in a mirrored photo is well within tolerance; the model is not fooled by a flip.
    d = gallery.distances(gallery.people[1].embeddings)
    assert (d < 0.4).all()
    saved = tmp_path / "g.npz"
    gallery.save(saved)
    loaded = Gallery.load(saved)
    assert loaded.names == gallery.names
    assert np.allclose(loaded.people[1].embeddings, gallery.people[1].embeddings)
    again = Gallery.from_paths([saved], engine)
    assert again.names == gallery.names


def test_several_faces_warns_or_refuses(tmp_path: Path, engine: FaceEngine, caplog) -> None:
    face = astronaut()[0:300, 100:400]
    small = cv2.resize(face, (220, 220))
    canvas = np.full((400, 700, 3), 90, np.uint8)
    canvas[50:350, 0:300] = face
    canvas[100:320, 420:640] = small
    path = tmp_path / "two.jpg"
    cv2.imwrite(str(path), canvas)
    with caplog.at_level(logging.WARNING, logger="blurface"):
        person = person_from_photos(path, engine)
    assert "2 faces" in caplog.text and "largest" in caplog.text
    assert len(person.embeddings) == 1
    with pytest.raises(GalleryError, match="2 faces"):
        person_from_photos(path, engine, strict=True)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"\x89PNG garbage"), "cannot be read"),
        (lambda p: cv2.imwrite(str(p), np.full((300, 300, 3), 128, np.uint8)), "no face"),
        (lambda p: cv2.imwrite(str(p), tiny_face_photo()), "px"),
    ],
    ids=["missing", "unreadable", "no-face", "tiny-face"],
)
def test_bad_photos(tmp_path: Path, engine: FaceEngine, make, message: str) -> None:
    path = tmp_path / "ref.png"
    make(path)
    with pytest.raises(GalleryError, match=message) as err:
        person_from_photos(path, engine)
    assert "ref.png" in str(err.value)


def test_empty_folder(tmp_path: Path, engine: FaceEngine) -> None:
    with pytest.raises(GalleryError, match="no photos"):
        person_from_photos(tmp_path, engine)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.zeros(3)), "lacks"),
        (dict(version=np.int32(2), embedder=np.array("sface/2021dec"), names=np.array(["a"]), embeddings=np.zeros((1, 64), np.float32),
              person=np.zeros(1, np.int32)), "embeddings"),
        (dict(version=np.int32(2), embedder=np.array("sface/2021dec"), names=np.array(["a"]), embeddings=np.full((1, 128), np.nan, np.float32),
              person=np.zeros(1, np.int32)), "NaN"),
        (dict(version=np.int32(2), embedder=np.array("sface/2021dec"), names=np.array(["a"]), embeddings=np.zeros((2, 128), np.float32),
              person=np.array([0, 5], np.int32)), "person"),
        (dict(version=np.int32(7), names=np.array(["a"]), embeddings=np.zeros((1, 128), np.float32),
              person=np.zeros(1, np.int32)), "version"),
    ],
    ids=["foreign", "wrong-dim", "nan", "bad-index", "version"],
)
def test_bad_npz(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "g.npz"
    np.savez(path, **arrays)
    with pytest.raises(GalleryError, match=message):
        Gallery.load(path)


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, version=np.int32(1), names=np.array([{"a": 1}], dtype=object),
             embeddings=np.zeros((1, 128), np.float32), person=np.zeros(1, np.int32))
    with pytest.raises(GalleryError, match="not a blurface"):
        Gallery.load(path)


def test_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(GalleryError, match="not a blurface"):
        Gallery.load(path)


def test_a_name_longer_than_a_plan_holds_is_refused_on_save_and_load(tmp_path: Path) -> None:
    """Plans refuse names over MAX_NAME on load, so a gallery must never carry one into a plan."""
    from blurface.plan import MAX_NAME

    person = Person("x" * (MAX_NAME + 1), np.ones((1, 128), np.float32), ["a.jpg"])
    with pytest.raises(GalleryError, match="characters: use 1 to"):
        Gallery([person], embedder="sface/2021dec").save(tmp_path / "long.npz")
    np.savez(tmp_path / "long2.npz", version=np.int32(2), embedder=np.array("sface/2021dec"),
             names=np.array(["y" * (MAX_NAME + 1)]), embeddings=np.ones((1, 128), np.float32),
             person=np.zeros(1, np.int32))
    with pytest.raises(GalleryError, match="characters: use 1 to"):
        Gallery.load(tmp_path / "long2.npz")
