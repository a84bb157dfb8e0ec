"""EmoGen's attribute tables: emotion confidence per attribute, and the attribute vocabularies.

The release ships them as Python pickles, and unpickling can run arbitrary code.
They are read here with a restricted unpickler that resolves only the numpy
globals the real files use (found with ``pickletools``: ``_reconstruct``,
``ndarray`` and ``dtype``) and nothing for the vocabularies (plain dicts, lists
and strings); any other global is refused before it is imported.  The hash is
checked on the very bytes that are unpickled.  :func:`export_attr_tables_json`
converts the tables once into plain JSON, which :func:`load_attr_tables_json`
reads without any pickle.

Files (EmoGen ``dataset_balance/``):

- ``attr_coefficient_emotion_{object,scene}.pkl``: attribute -> float32 (8,), a
  softmax over the emotions (``task.EMOTIONS`` order): the emotion confidence.
- ``all_attribute_object_scene.pkl``: the list of all attribute names (object
  and scene vocabularies together), the class list of the attribute loss.
- ``object_attr.pkl``, ``scene_attr.pkl``: ``"attr_<emotion>"`` -> list of the
  object (scene) attributes assigned to that emotion.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.fileio import write_json_atomic
from emogen_bench.hashing import sha256_bytes
from emogen_bench.task import EMOTION_NAMES

KINDS: tuple[str, ...] = ("object", "scene")
COEFFICIENT_FILES: dict[str, str] = {kind: f"attr_coefficient_emotion_{kind}.pkl" for kind in KINDS}
VOCABULARY_FILES: dict[str, str] = {
    "attributes": "all_attribute_object_scene.pkl",
    "object": "object_attr.pkl",
    "scene": "scene_attr.pkl",
}
#: Key of one emotion's list in ``object_attr.pkl`` / ``scene_attr.pkl``.
VOCABULARY_KEY = "attr_{emotion}"
#: Tolerance on the sum of one softmax row (float32 rounding in the release: ~1e-5).
ROW_SUM_TOLERANCE = 1e-4

JSON_FORMAT = "emogen-bench.attr-tables"
JSON_FORMAT_VERSION = 1


def _numpy_reconstruct() -> Any:
    """``numpy``'s array reconstructor, under its numpy 2 name when that exists."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy has no multiarray._reconstruct")  # pragma: no cover - every numpy has it


def numpy_array_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickled plain numpy array needs, and nothing else.

    The released files name ``numpy.core.multiarray._reconstruct`` (numpy 1);
    numpy 2 writes the same function as ``numpy._core.multiarray._reconstruct``.
    """
    reconstruct = _numpy_reconstruct()
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed`` and refuses every other one."""

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self._allowed = dict(allowed)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def read_pickle(
    path: str | Path, *, allowed: Mapping[tuple[str, str], Any], what: str, expected_sha256: str | None = None
) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`, after checking its sha256 if one is given."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the {what} file ({exc.strerror or exc}); fetch it again.") from exc
    if expected_sha256 is not None:
        digest = sha256_bytes(data)
        if digest != expected_sha256.lower():
            raise WeightsError(
                f"{path}: sha256 {digest} does not match the pinned {expected_sha256}; the {what} file was not "
                "opened (a pickle can run code). Delete it and fetch it again."
            )
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: the {what} pickle asks for something beyond plain data and numpy arrays ({exc}); "
            "it was refused without running it. This is not the released file: delete it and fetch it again."
        ) from exc
    except Exception as exc:  # a damaged pickle raises almost anything (EOFError, ValueError, TypeError...)
        raise WeightsError(
            f"{path}: the {what} pickle is damaged ({type(exc).__name__}: {exc}); fetch it again."
        ) from exc


def validate_coefficients(table: Any, *, source: str) -> dict[str, np.ndarray]:
    """Check one coefficient table (str -> float32 (8,) softmax row) and return a clean copy."""
    if not isinstance(table, dict) or not table:
        raise WeightsError(f"{source}: expected a non-empty dict attribute -> array, found {type(table).__name__}.")
    n = len(EMOTION_NAMES)
    clean = {}
    for name, row in table.items():
        if not isinstance(name, str):
            raise WeightsError(f"{source}: attribute names must be strings, found {name!r}.")
        if not isinstance(row, np.ndarray) or row.dtype != np.float32 or row.shape != (n,):
            found = f"{row.dtype} {row.shape}" if isinstance(row, np.ndarray) else type(row).__name__
            raise WeightsError(
                f"{source}: attribute {name!r}: expected a float32 array of shape ({n},), found {found}."
            )
        total = float(row.sum(dtype=np.float64))
        if not np.isfinite(row).all() or (row < 0).any() or abs(total - 1.0) > ROW_SUM_TOLERANCE:
            raise WeightsError(
                f"{source}: attribute {name!r}: not a softmax over the {n} emotions "
                f"(values must be finite, >= 0 and sum to 1; sum is {total:.6g})."
            )
        clean[name] = np.array(row, dtype=np.float32, copy=True)
    return clean


def _coefficient_paths(source: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    if isinstance(source, Mapping):
        if set(source) != set(KINDS):
            raise UsageError(f"attribute coefficient files must be given for exactly {KINDS}; got {sorted(source)}.")
        return {kind: Path(source[kind]) for kind in KINDS}
    folder = Path(source)
    if not folder.is_dir():
        raise WeightsError(
            f"{folder}: attribute coefficient folder not found; fetch it with the `emogen-bench weights` command."
        )
    return {kind: folder / COEFFICIENT_FILES[kind] for kind in KINDS}


def _expected_hash(expected_sha256: Mapping[str, str] | None, path: Path) -> str | None:
    if expected_sha256 is None:
        return None
    try:
        return expected_sha256[path.name]
    except KeyError:
        raise ValueError(f"expected_sha256 has no entry for {path.name!r}; it is keyed by file name") from None


def load_attr_coefficients(
    source: str | Path | Mapping[str, str | Path], *, expected_sha256: Mapping[str, str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """``{"object": {attr: (8,) float32}, "scene": {...}}`` from the release folder or ``{kind: file}``.

    ``expected_sha256`` maps each file NAME to its full hex sha256; when given,
    a file whose bytes do not match is refused before it is unpickled.
    """
    paths = _coefficient_paths(source)
    hashes = {kind: _expected_hash(expected_sha256, path) for kind, path in paths.items()}
    allowed = numpy_array_globals()
    return {
        kind: validate_coefficients(
            read_pickle(path, allowed=allowed, what=f"{kind} attribute coefficients", expected_sha256=hashes[kind]),
            source=str(path),
        )
        for kind, path in paths.items()
    }


@dataclass(frozen=True)
class AttrVocabulary:
    """The attribute names of the EmoGen release.

    ``attributes``: all attribute names (objects and scenes, each name once), in
    the file's order, the class order of the attribute loss.
    ``objects_by_emotion`` / ``scenes_by_emotion``: emotion -> the object (scene)
    attributes the release assigns to it; a name may appear under two emotions.
    """

    attributes: tuple[str, ...]
    objects_by_emotion: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scenes_by_emotion: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _string_list(value: Any, *, source: str, unique: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WeightsError(f"{source}: expected a list of attribute names (strings), found {type(value).__name__}.")
    if unique and len(set(value)) != len(value):
        raise WeightsError(f"{source}: the attribute list repeats names; every attribute must appear once.")
    return tuple(value)


def validate_by_emotion(table: Any, *, source: str) -> dict[str, tuple[str, ...]]:
    """Check an ``"attr_<emotion>" -> [names]`` table and key it by emotion name."""
    expected = [VOCABULARY_KEY.format(emotion=emotion) for emotion in EMOTION_NAMES]
    if not isinstance(table, dict) or sorted(map(str, table)) != sorted(expected):
        found = sorted(map(str, table)) if isinstance(table, dict) else type(table).__name__
        raise WeightsError(f"{source}: expected a dict with keys {expected}, found {found}.")
    return {
        emotion: _string_list(table[key], source=f"{source} [{key}]", unique=False)
        for emotion, key in zip(EMOTION_NAMES, expected, strict=False)
    }


def load_attr_vocabulary(folder: str | Path, *, expected_sha256: Mapping[str, str] | None = None) -> AttrVocabulary:
    """The three vocabulary pickles of the release folder (plain data only: no global is allowed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(
            f"{folder}: attribute vocabulary folder not found; fetch it with the `emogen-bench weights` command."
        )
    paths = {key: folder / name for key, name in VOCABULARY_FILES.items()}
    hashes = {key: _expected_hash(expected_sha256, path) for key, path in paths.items()}
    raw = {
        key: read_pickle(path, allowed={}, what="attribute vocabulary", expected_sha256=hashes[key])
        for key, path in paths.items()
    }
    return AttrVocabulary(
        attributes=_string_list(raw["attributes"], source=str(paths["attributes"]), unique=True),
        objects_by_emotion=validate_by_emotion(raw["object"], source=str(paths["object"])),
        scenes_by_emotion=validate_by_emotion(raw["scene"], source=str(paths["scene"])),
    )


@dataclass(frozen=True)
class AttrTables:
    """What the JSON export holds: the coefficient tables, optionally the vocabulary and source hashes."""

    coefficients: dict[str, dict[str, np.ndarray]]
    vocabulary: AttrVocabulary | None = None
    #: File name of each converted pickle -> its sha256.
    sources: dict[str, str] = field(default_factory=dict)


def attr_tables_to_json(tables: AttrTables) -> dict[str, Any]:
    """The JSON document of ``tables``; float32 values are written exactly (they round-trip bit for bit)."""
    document: dict[str, Any] = {
        "format": JSON_FORMAT,
        "format_version": JSON_FORMAT_VERSION,
        "emotions": list(EMOTION_NAMES),
        "sources": dict(tables.sources),
        "coefficients": {
            kind: {name: [float(v) for v in row] for name, row in table.items()}
            for kind, table in tables.coefficients.items()
        },
    }
    if tables.vocabulary is not None:
        vocabulary = tables.vocabulary
        document["vocabulary"] = {
            "attributes": list(vocabulary.attributes),
            "objects_by_emotion": {e: list(names) for e, names in vocabulary.objects_by_emotion.items()},
            "scenes_by_emotion": {e: list(names) for e, names in vocabulary.scenes_by_emotion.items()},
        }
    return document


def attr_tables_from_json(document: Any, *, source: str) -> AttrTables:
    """Parse and validate a document written by :func:`attr_tables_to_json`."""
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise WeightsError(f"{source}: not an attribute-tables JSON file (expected \"format\": \"{JSON_FORMAT}\").")
    if document.get("format_version") != JSON_FORMAT_VERSION:
        raise WeightsError(
            f"{source}: attribute-tables format version {document.get('format_version')!r}; this release reads "
            f"version {JSON_FORMAT_VERSION}. Convert the pickles again with this release."
        )
    if document.get("emotions") != list(EMOTION_NAMES):
        raise WeightsError(f"{source}: emotion order {document.get('emotions')} differs from {list(EMOTION_NAMES)}.")
    coefficients_json = document.get("coefficients")
    if not isinstance(coefficients_json, dict) or sorted(coefficients_json) != sorted(KINDS):
        raise WeightsError(f"{source}: \"coefficients\" must hold exactly the tables {list(KINDS)}.")
    coefficients = {}
    for kind in KINDS:
        table = coefficients_json[kind]
        if not isinstance(table, dict):
            raise WeightsError(f"{source}: coefficients[{kind!r}] must be an object attribute -> list of numbers.")
        try:
            arrays = {name: np.asarray(row, dtype=np.float32) for name, row in table.items()}
        except (TypeError, ValueError) as exc:
            raise WeightsError(
                f"{source}: coefficients[{kind!r}] holds a row that is not a list of numbers ({exc})."
            ) from exc
        coefficients[kind] = validate_coefficients(arrays, source=f"{source} [{kind}]")
    vocabulary = None
    if "vocabulary" in document:
        entry = document["vocabulary"]
        if not isinstance(entry, dict):
            raise WeightsError(f"{source}: \"vocabulary\" must be an object.")
        vocabulary = AttrVocabulary(
            attributes=_string_list(entry.get("attributes"), source=f"{source} [vocabulary.attributes]", unique=True),
            objects_by_emotion=_by_emotion_json(entry.get("objects_by_emotion"), source=f"{source} [objects]"),
            scenes_by_emotion=_by_emotion_json(entry.get("scenes_by_emotion"), source=f"{source} [scenes]"),
        )
    sources = document.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise WeightsError(f"{source}: \"sources\" must map file names to sha256 strings.")
    return AttrTables(coefficients=coefficients, vocabulary=vocabulary, sources=dict(sources))


def _by_emotion_json(value: Any, *, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or sorted(value) != sorted(EMOTION_NAMES):
        raise WeightsError(f"{source}: expected one list per emotion ({', '.join(EMOTION_NAMES)}).")
    return {
        emotion: _string_list(value[emotion], source=f"{source} [{emotion}]", unique=False)
        for emotion in EMOTION_NAMES
    }


def export_attr_tables_json(tables: AttrTables, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``tables`` as JSON to ``path`` atomically; refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it.")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: folder does not exist; create it first.")
    write_json_atomic(path, attr_tables_to_json(tables), indent=1)
    return path


def load_attr_tables_json(path: str | Path) -> AttrTables:
    """Read a JSON file written by :func:`export_attr_tables_json`, with the same checks as the pickles."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the attribute-tables JSON ({exc.strerror or exc}).") from exc
    except ValueError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc}); convert the pickles again.") from exc
    return attr_tables_from_json(document, source=str(path))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid number here")

