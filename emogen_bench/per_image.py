"""Per-image results: what each emotion classifier and Sem-C said about every image of a submission.

One row per image of the submission, in canonical order (emotion, then path), with the columns of
:data:`COLUMNS` (docs/report.md).  The values are taken from the very features the metrics are computed
from (through the ``on_features`` hook of :func:`emogen_bench.evaluate.evaluate`) with the metrics' own
arithmetic (the same softmax in float64, the same argmax), so Emo-A's accuracy, its confusion matrix and
Sem-C recomputed from the rows equal the results JSON exactly.  A cell is empty where the classifier did not
run (metric not requested) or did not read that image (``emogen-paper-code`` reads only ``*jpg`` names).

Written as CSV (always; floats in Python's shortest round-trip form) or Parquet (with pandas and pyarrow).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emogen_bench.errors import InvalidInputError, UsageError
from emogen_bench.fileio import check_output_file, write_atomic
from emogen_bench.safe_read import decode_text, read_bytes
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES

if TYPE_CHECKING:
    from emogen_bench.config import EvalConfig
    from emogen_bench.pipeline import ImageItem
    from emogen_bench.protocols.base import Features, Selection
    from emogen_bench.results import EvaluationResult


@dataclass(frozen=True)
class Classifier:
    """An emotion classifier whose softmax a metric reads: the metric key and where its logits are."""

    metric: str
    extractor: str
    output: str
    label: str


#: The emotion classifiers of the protocols, in table order.
CLASSIFIERS: tuple[Classifier, ...] = (
    Classifier("emo_a", "clip", "emotion_logits", "Emo-A (CLIP head)"),
    Classifier("emo_a_resnet50", "emoset", "logits", "Emo-A (ResNet-50)"),
)
#: Sem-C's winner column: which classifier gave the larger top-1 probability (``tie`` when equal).
WINNERS: tuple[str, ...] = ("imagenet", "places365", "tie")
#: The columns, in file order (stable; docs/report.md).
COLUMNS: tuple[str, ...] = (
    "path",
    "sha256",
    "emotion",
    *(f"{c.metric}_{suffix}" for c in CLASSIFIERS for suffix in ("predicted", "target_prob")),
    "sem_c_imagenet_prob",
    "sem_c_places365_prob",
    "sem_c_winner",
)
FLOAT_COLUMNS: frozenset[str] = frozenset(
    {f"{c.metric}_target_prob" for c in CLASSIFIERS} | {"sem_c_imagenet_prob", "sem_c_places365_prob"}
)
#: File name endings and the formats they are written in.
FORMATS: dict[str, str] = {".csv": "CSV", ".parquet": "Parquet"}
#: Python packages the Parquet format needs (import names).
PARQUET_PACKAGES: tuple[str, ...] = ("pandas", "pyarrow")

Row = dict[str, Any]


def _winner(imagenet: float, places: float) -> str:
    if imagenet > places:
        return "imagenet"
    return "places365" if places > imagenet else "tie"


def rows_from_features(items: Sequence[ImageItem], selection: Selection, features: Features) -> list[Row]:
    """One row per item (canonical order) from the features the metrics read; ``None`` where there is no value."""
    from emogen_bench.protocols.base import softmax

    rows: dict[str, Row] = {
        item.relpath: {column: None for column in COLUMNS} | {
            "path": item.relpath, "sha256": item.sha256, "emotion": item.emotion,
        }
        for item in items
    }  # fmt: skip
    for classifier in CLASSIFIERS:
        if classifier.metric not in selection.metrics:
            continue
        files = selection.files[classifier.metric]
        probabilities = softmax(features.of(classifier.metric, classifier.extractor)[classifier.output])
        for item, probs in zip(files, probabilities, strict=True):
            row = rows[item.relpath]
            row[f"{classifier.metric}_predicted"] = EMOTION_NAMES[int(probs.argmax())]
            row[f"{classifier.metric}_target_prob"] = float(probs[EMOTION_IDS[item.emotion]])
    if "sem_c" in selection.metrics:
        semantic = features.of("sem_c", "semantic")
        imagenet = semantic["imagenet_max_prob"].astype("float64").ravel()
        places = semantic["places_max_prob"].astype("float64").ravel()
        for item, first, second in zip(selection.files["sem_c"], imagenet, places, strict=True):
            row = rows[item.relpath]
            row["sem_c_imagenet_prob"], row["sem_c_places365_prob"] = float(first), float(second)
            row["sem_c_winner"] = _winner(float(first), float(second))
    return list(rows.values())


def evaluate_per_image(
    path: str | Path, config: EvalConfig | None = None, **options: Any
) -> tuple[EvaluationResult, list[Row]]:
    """:func:`emogen_bench.evaluate.evaluate` plus its per-image rows (``options`` are passed on).

    The feature pass always runs (features come from the cache when present), since the rows need it.
    """
    from emogen_bench.evaluate import evaluate

    captured: list[list[Row]] = []
    result = evaluate(
        path, config, on_features=lambda items, selection, features: captured.append(
            rows_from_features(items, selection, features)
        ), **options,
    )  # fmt: skip
    if len(captured) != 1:
        raise RuntimeError(f"evaluate() handed over its features {len(captured)} times instead of once")
    return result, captured[0]


# --- writing ------------------------------------------------------------------------------------------------------


def file_format(path: Path, option: str = "--per-image") -> str:
    """``"CSV"`` or ``"Parquet"`` from the name's ending; a usage error for any other ending or missing packages."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{option} {path}: the file name must end in .csv or .parquet (nothing was written)")
    if FORMATS[suffix] == "Parquet":
        missing = [name for name in PARQUET_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise UsageError(
                f"{option} {path}: writing Parquet needs {' and '.join(missing)}, which is not installed; "
                f"`pip install {' '.join(missing)}`, or write CSV (a name ending in .csv)"
            )
    return FORMATS[suffix]


def check_per_image_file(
    path: str | Path, *, overwrite: bool, inputs: Mapping[str, str | Path] | None = None, option: str = "--per-image"
) -> Path:
    """Check before any work that the per-image file may be written at ``path`` (the output rule); returns it."""
    checked = check_output_file(path, overwrite=overwrite, option=option, inputs=inputs)
    file_format(checked, option)
    return checked


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float64
    return str(value)


def to_csv(rows: Sequence[Row]) -> str:
    """The rows as CSV text with the header :data:`COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([_cell(row[column]) for column in COLUMNS] for row in rows)
    return buffer.getvalue()


def to_parquet(rows: Sequence[Row]) -> bytes:
    """The rows as Parquet bytes (pandas + pyarrow); float columns are float64, empty cells null."""
    import pandas as pd

    frame = pd.DataFrame([[row[column] for column in COLUMNS] for row in rows], columns=list(COLUMNS))
    for column in FLOAT_COLUMNS:
        frame[column] = frame[column].astype("float64")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def write_per_image(rows: Sequence[Row], path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the rows atomically as CSV or Parquet (by the name's ending); never replaces a file unless asked."""
    path = check_per_image_file(path, overwrite=overwrite)
    data = to_parquet(rows) if file_format(path) == "Parquet" else to_csv(rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, data, overwrite=overwrite)


# --- reading ------------------------------------------------------------------------------------------------------


def _parse(column: str, text: str, where: str) -> Any:
    if text == "":
        if column in ("path", "sha256", "emotion"):
            raise InvalidInputError(f"{where}: the column {column!r} is empty")
        return None
    if column in FLOAT_COLUMNS:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{where}: {column} is {text!r}, not a probability in [0, 1]")
        return value
    allowed = {
        "emotion": EMOTION_NAMES, "sem_c_winner": WINNERS,
        **{f"{c.metric}_predicted": EMOTION_NAMES for c in CLASSIFIERS},
    }.get(column)  # fmt: skip
    if allowed is not None and text not in allowed:
        raise InvalidInputError(f"{where}: {column} is {text!r}; expected one of {', '.join(allowed)}")
    return text


def _rows_from_table(table: Sequence[Sequence[str]], source: Path) -> list[Row]:
    if not table or tuple(table[0]) != COLUMNS:
        found = ", ".join(table[0]) if table else "nothing"
        raise InvalidInputError(
            f"{source}: not a per-image results file of this version: the columns are {found}; expected "
            f"{', '.join(COLUMNS)} (docs/report.md)"
        )
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        where = f"{source}, line {number}"
        if len(cells) != len(COLUMNS):
            raise InvalidInputError(f"{where}: {len(cells)} cells where the header has {len(COLUMNS)}")
        row = {column: _parse(column, cell, where) for column, cell in zip(COLUMNS, cells)}
        if row["path"].split("/", 1)[0] != row["emotion"]:
            raise InvalidInputError(f"{where}: the path {row['path']!r} is not in the folder of {row['emotion']!r}")
        rows.append(row)
    return rows


def read_per_image(path: str | Path) -> list[Row]:
    """Read a per-image file written by :func:`write_per_image` (CSV, or Parquet with pandas + pyarrow)."""
    path = Path(path)
    if file_format(path, "--per-image") == "Parquet":
        data = read_bytes(path, "per-image results file", InvalidInputError)
        import pandas as pd

        try:
            frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except Exception as error:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
            raise InvalidInputError(f"{path}: not a readable Parquet file ({error})") from None
        table = [list(frame.columns)] + [["" if _missing(v) else _text(v) for v in r] for r in frame.itertuples(False)]
        return _rows_from_table(table, path)
    text = decode_text(read_bytes(path, "per-image results file", InvalidInputError), str(path),
                       "per-image results file", InvalidInputError)  # fmt: skip
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise InvalidInputError(f"{path}: not a readable CSV file ({error})") from None
    return _rows_from_table(table, path)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)
