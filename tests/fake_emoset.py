"""A small fake EmoSet in a temporary folder: the real layout and field names, tiny real JPEGs.

``make_fake_emoset(root, ...)`` writes the folder and returns a :class:`FakeEmoSet`
that says what it wrote and what a correct reader must make of it (kept rows,
drops, problems), so tests compute their expectations from the description
instead of hard-coding numbers.  Reusable by any test that needs EmoSet.
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from emogen_bench import task

#: Labels in original EmoSet spelling (capitals, spaces) so normalisation is exercised.
#: "castle" / "Castle" is both a scene and an object, as in the released vocabularies.
SCENES: tuple[str, ...] = ("amusement park", "Mountain snowy", "cemetery", "Beach", "ice cream parlor", "castle")
OBJECTS: tuple[str, ...] = ("Wine glass", "Christmas tree", "Dog", "Cake", "Tower", "Castle")

#: Irregular images and files; ``edge_cases=True`` writes all of them.
EDGE_CASES: tuple[str, ...] = (
    "no_label",  # neither scene nor object -> dropped (no_scene_or_object)
    "empty_object",  # no scene, object [] -> dropped
    "null_scene",  # scene null, objects -> kept with the first object
    "object_only",  # two objects, no scene -> kept with the first object
    "scene_and_object",  # both -> kept with the scene
    "int_id",  # the id is a JSON integer -> kept, id stored as a string
    "bad_json",  # annotation is not JSON -> annotation_invalid_json
    "object_not_list",  # "object": "Dog" -> annotation_malformed
    "scene_not_string",  # "scene": 3 -> annotation_malformed
    "image_missing",  # listed, no image file -> image_missing
    "annotation_missing",  # listed, no annotation file -> annotation_missing
    "annotation_without_image",  # annotation only, listed nowhere -> orphan_annotation
    "unlisted_image",  # image and annotation on disk, listed nowhere -> unlisted_image
    "several_splits",  # listed in train and test -> several_splits
    "bad_entry",  # an entry with 3 fields -> bad_split_entry (its files are not reported again)
    "unknown_emotion",  # a "joy" entry and joy/ folders -> unknown_emotion x3
)

UNKNOWN_EMOTION = "joy"

PerSplit = int | Mapping[str, int] | Mapping[str, Mapping[str, int]] | None


@dataclass(frozen=True)
class FakeImage:
    """One image of a known emotion that the builder created (or deliberately left out).

    ``splits`` are the split files with a valid entry for it (empty: listed
    nowhere); ``outcome`` is what a correct reader does with it: ``kept``,
    ``no_scene_or_object`` or ``problem``; ``problems`` are the expected
    ``(code, path)`` pairs.
    """

    emotion: str
    id: str
    splits: tuple[str, ...]
    image_path: str
    annotation_path: str
    outcome: str
    attribute: str | None = None
    attribute_kind: str | None = None
    attribute_original: str | None = None
    problems: tuple[tuple[str, str], ...] = ()
    has_image_file: bool = True
    has_annotation_file: bool = True

    @property
    def split(self) -> str:
        """The one split of a kept image."""
        (split,) = set(self.splits)
        return split


@dataclass
class FakeEmoSet:
    """What :func:`make_fake_emoset` wrote under ``root`` and what a reader must conclude."""

    root: Path
    images: list[FakeImage]
    #: Expected problems not tied to one image: ``(code, path)``.
    extra_problems: list[tuple[str, str]] = field(default_factory=list)
    edge_cases: tuple[str, ...] = ()

    def kept(self) -> list[FakeImage]:
        return [image for image in self.images if image.outcome == "kept"]

    def counts(self) -> Counter[tuple[str, str]]:
        """Kept images per ``(emotion, split)``."""
        return Counter((image.emotion, image.split) for image in self.kept())

    def listed(self) -> Counter[tuple[str, str]]:
        """Valid split-file entries of known emotions per ``(emotion, split)``."""
        return Counter((image.emotion, split) for image in self.images for split in image.splits)

    def dropped(self, reason: str) -> Counter[tuple[str, str]]:
        """Entries per ``(emotion, split)`` left out for ``reason`` (``no_scene_or_object`` or ``problem``)."""
        return Counter(
            (image.emotion, split) for image in self.images if image.outcome == reason for split in image.splits
        )

    def expected_problems(self) -> Counter[tuple[str, str]]:
        """Every expected ``(code, path)``, with multiplicity."""
        found = Counter(problem for image in self.images for problem in image.problems)
        found.update(self.extra_problems)
        return found

    def image_file(self, image: FakeImage) -> Path:
        return self.root / image.image_path


def _per_split_counts(per_split: PerSplit, emotion: task.Emotion) -> dict[str, int]:
    """Regular images per split for one emotion (default: imbalanced across emotions)."""
    if per_split is None:
        return {"train": 3 + emotion.id % 3, "val": 1, "test": 2}
    if isinstance(per_split, int):
        return {split: per_split for split in task.DATA.splits}
    if emotion.name in per_split:
        chosen = per_split[emotion.name]
        return {split: int(chosen.get(split, 0)) for split in task.DATA.splits}  # type: ignore[union-attr]
    if any(name in per_split for name in task.EMOTION_NAMES):
        return {split: 0 for split in task.DATA.splits}
    return {split: int(per_split.get(split, 0)) for split in task.DATA.splits}  # type: ignore[arg-type]


class _Writer:
    """Writes files under the root and collects split entries; one per fake dataset."""

    def __init__(self, root: Path, image_size: int, rng: random.Random) -> None:
        self.root = root
        self.image_size = image_size
        self.rng = rng
        self.entries: dict[str, list[list[Any]]] = {split: [] for split in task.DATA.splits}
        self.next_number: Counter[str] = Counter()

    def new_paths(self, emotion: str) -> tuple[str, str, str]:
        number = self.next_number[emotion]
        self.next_number[emotion] += 1
        image_id = f"{emotion}_{number:05d}"
        return image_id, f"image/{emotion}/{image_id}.jpg", f"annotation/{emotion}/{image_id}.json"

    def jpeg(self, relative: str) -> None:
        size = self.image_size
        noise = self.rng.randbytes(size * size * 3)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (size, size), noise).save(buffer, format="JPEG", quality=90)
        self._write(relative, buffer.getvalue())

    def annotation(self, relative: str, content: Any) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else json.dumps(content, indent=1).encode("utf-8")
        self._write(relative, data)

    def _write(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def list_in(self, split: str, entry: list[Any]) -> None:
        self.entries[split].append(entry)


def _regular_annotation(emotion: str, k: int, rng: random.Random) -> tuple[dict[str, Any], tuple[str, str]]:
    """An annotation cycling scene only / objects only / both; returns it and (kind, original)."""
    annotation: dict[str, Any] = {
        "emotion": emotion,
        "brightness": round(rng.random(), 3),
        "colorfulness": round(rng.random(), 3),
    }
    scene = rng.choice(SCENES)
    objects = rng.sample(OBJECTS, 1 + k % 2)
    if k % 3 in (0, 2):
        annotation["scene"] = scene
    if k % 3 in (1, 2):
        annotation["object"] = objects
    if k % 4 == 0:
        annotation["facial_expression"] = "happy"
        annotation["human_action"] = "smiling"
    return annotation, (("scene", scene) if k % 3 in (0, 2) else ("object", objects[0]))


def _kept(emotion: str, image_id: str, splits: tuple[str, ...], image_path: str, annotation_path: str,
          kind: str, original: str) -> FakeImage:
    return FakeImage(
        emotion, image_id, splits, image_path, annotation_path, "kept",
        attribute=original.strip().lower().replace(" ", "_"), attribute_kind=kind, attribute_original=original,
    )


def _edge_case(name: str, writer: _Writer, emotion: str, split: str, extra: list[tuple[str, str]]) -> FakeImage | None:
    """Write one edge case into ``emotion``/``split``; return its description."""
    image_id, image_path, annotation_path = writer.new_paths(emotion)
    entry: list[Any] = [emotion, image_id, image_path, annotation_path]
    base = {"emotion": emotion, "brightness": 0.5, "colorfulness": 0.5}
    simple = {
        "no_label": (base, "no_scene_or_object", None),
        "empty_object": ({**base, "object": []}, "no_scene_or_object", None),
        "null_scene": ({**base, "scene": None, "object": ["Dog", "Cake"]}, "kept", ("object", "Dog")),
        "object_only": ({**base, "object": ["Wine glass", "Tower"]}, "kept", ("object", "Wine glass")),
        "scene_and_object": (
            {**base, "scene": "amusement park", "object": ["Cake"]}, "kept", ("scene", "amusement park")
        ),
        "int_id": ({**base, "scene": "Beach"}, "kept", ("scene", "Beach")),
        "bad_json": ('{"scene": "beach", "object": [', "problem", "annotation_invalid_json"),
        "object_not_list": ({**base, "object": "Dog"}, "problem", "annotation_malformed"),
        "scene_not_string": ({**base, "scene": 3}, "problem", "annotation_malformed"),
    }
    if name in simple:
        content, outcome, detail = simple[name]
        if name == "int_id":
            number = writer.next_number[emotion] - 1
            image_id, entry[1] = str(10_000 + number), 10_000 + number
        writer.jpeg(image_path)
        writer.annotation(annotation_path, content)
        writer.list_in(split, entry)
        if outcome == "kept":
            return _kept(emotion, image_id, (split,), image_path, annotation_path, *detail)  # type: ignore[misc]
        problems = ((detail, annotation_path),) if outcome == "problem" else ()
        return FakeImage(emotion, image_id, (split,), image_path, annotation_path, outcome, problems=problems)
    if name == "image_missing":
        writer.annotation(annotation_path, {**base, "scene": "cemetery"})
        writer.list_in(split, entry)
        return FakeImage(emotion, image_id, (split,), image_path, annotation_path, "problem",
                         problems=(("image_missing", image_path),), has_image_file=False)
    if name == "annotation_missing":
        writer.jpeg(image_path)
        writer.list_in(split, entry)
        return FakeImage(emotion, image_id, (split,), image_path, annotation_path, "problem",
                         problems=(("annotation_missing", annotation_path),), has_annotation_file=False)
    if name == "annotation_without_image":
        writer.annotation(annotation_path, {**base, "scene": "cemetery"})
        return FakeImage(emotion, image_id, (), image_path, annotation_path, "problem",
                         problems=(("orphan_annotation", annotation_path),), has_image_file=False)
    if name == "unlisted_image":
        writer.jpeg(image_path)
        writer.annotation(annotation_path, {**base, "scene": "cemetery"})
        return FakeImage(emotion, image_id, (), image_path, annotation_path, "problem",
                         problems=(("unlisted_image", image_path),))
    if name == "several_splits":
        writer.jpeg(image_path)
        writer.annotation(annotation_path, {**base, "scene": "cemetery"})
        other = "test" if split != "test" else "train"
        writer.list_in(split, entry)
        writer.list_in(other, list(entry))
        return FakeImage(emotion, image_id, (split, other), image_path, annotation_path, "problem",
                         problems=(("several_splits", image_path),))
    if name == "bad_entry":
        writer.jpeg(image_path)
        writer.annotation(annotation_path, {**base, "scene": "cemetery"})
        writer.list_in(split, entry[:3])
        extra.append(("bad_split_entry", f"{split}.json"))
        return FakeImage(emotion, image_id, (), image_path, annotation_path, "problem")
    if name == "unknown_emotion":
        image_id, image_path, annotation_path = writer.new_paths(UNKNOWN_EMOTION)
        writer.jpeg(image_path)
        writer.annotation(annotation_path, {**base, "scene": "beach"})
        writer.list_in(split, [UNKNOWN_EMOTION, image_id, image_path, annotation_path])
        extra.extend([
            ("unknown_emotion", f"{split}.json"),
            ("unknown_emotion", f"image/{UNKNOWN_EMOTION}"),
            ("unknown_emotion", f"annotation/{UNKNOWN_EMOTION}"),
        ])
        return None
    raise ValueError(f"unknown edge case {name!r}; choose from {', '.join(EDGE_CASES)}")


def make_fake_emoset(
    root: Path,
    *,
    per_split: PerSplit = None,
    edge_cases: bool | Iterable[str] = True,
    image_size: int = 8,
    int_ids: bool = False,
    write_info: bool = True,
    seed: int = 0,
) -> FakeEmoSet:
    """Write a fake EmoSet under ``root`` and describe it.

    ``per_split``: regular (valid, labelled) images per split: an int for every
    split of every emotion, ``{split: n}``, or ``{emotion: {split: n}}``
    (emotions not named get none); default 3-5 train, 1 val, 2 test, imbalanced
    across emotions.  ``edge_cases``: ``True`` for all of :data:`EDGE_CASES`,
    ``False`` for none, or the names to include (each spread over emotions and
    splits).  ``int_ids`` writes the regular images' ids as JSON integers.
    Deterministic for a ``seed``.
    """
    root = Path(root)
    rng = random.Random(seed)
    writer = _Writer(root, image_size, rng)
    for folder in ("image", "annotation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    images: list[FakeImage] = []
    extra: list[tuple[str, str]] = []
    k = 0
    for emotion in task.EMOTIONS:
        for split, count in _per_split_counts(per_split, emotion).items():
            for _ in range(count):
                image_id, image_path, annotation_path = writer.new_paths(emotion.name)
                annotation, (kind, original) = _regular_annotation(emotion.name, k, rng)
                k += 1
                writer.jpeg(image_path)
                writer.annotation(annotation_path, annotation)
                stored_id: Any = int(image_id.rsplit("_", 1)[1]) if int_ids else image_id
                writer.list_in(split, [emotion.name, stored_id, image_path, annotation_path])
                described = _kept(emotion.name, str(stored_id), (split,), image_path, annotation_path, kind, original)
                images.append(described)
    names = EDGE_CASES if edge_cases is True else () if edge_cases is False else tuple(edge_cases)
    for position, name in enumerate(names):
        emotion = task.EMOTION_NAMES[position % len(task.EMOTION_NAMES)]
        split = task.DATA.splits[position % len(task.DATA.splits)]
        described = _edge_case(name, writer, emotion, split, extra)
        if described is not None:
            images.append(described)
    for split, split_file in zip(task.DATA.splits, task.DATA.split_files):
        (root / split_file).write_text(json.dumps(writer.entries[split]), encoding="utf-8")
    if write_info:
        info = {"label2idx": dict(task.EMOTION_IDS), "idx2label": {str(e.id): e.name for e in task.EMOTIONS}}
        (root / "info.json").write_text(json.dumps(info), encoding="utf-8")
    return FakeEmoSet(root=root, images=images, extra_problems=extra, edge_cases=names)
