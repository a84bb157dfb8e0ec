"""Emotion confidence: a linear emotion classifier on CLIP image embeddings, and per-attribute confidence tables.

The head reads the projected (not normalised) CLIP ViT-L/14 image embedding,
like the released ``emo-head-clip`` that the Emo-A metric uses; the supplement
reports 83% accuracy.  An attribute's confidence is the head's softmax averaged
over the EmoSet images with that attribute, an (8,) vector; stage 2 weights the
attribute loss of an image by the entry of the image's emotion (``a``), and a
threshold sets ``a`` to 0 for attributes below it (emotion-agnostic ones).

Training standardises the embeddings (per-dimension mean and std of the
training set) for a well-conditioned problem, runs Adam on the cross-entropy
(multinomial logistic regression), and folds the standardisation back into the
weights, so the result is a plain ``Linear(768, 8)`` on raw embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emogen_bench.data import IndexRow
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.features.clip_pixels import ClipPixelSettings, clip_pixels
from emogen_bench.fileio import atomic_writer, write_json_atomic
from emogen_bench.models.clip import clip_image_embeddings, load_clip_pixel_settings
from emogen_bench.models.emotion_head import load_emotion_head
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES
from emogen_bench.weights import WeightStore, load_artifact, open_store
from reference.data import EmoSetImages

NUM_EMOTIONS = len(EMOTION_NAMES)
TABLE_FORMAT = "emogen-bench.reference.emotion-confidence"
TABLE_FORMAT_VERSION = 1
#: Order in which the released code merges its two tables (``get_coefficient``): scene first, object updates it.
RELEASED_MERGE_ORDER: tuple[str, ...] = ("scene", "object")

ConfidenceTable = dict[str, np.ndarray]


# ---- the CLIP-space head -------------------------------------------------------------------------------------


def _as_tensor(values: Any, dtype: torch.dtype) -> torch.Tensor:
    return values.detach().cpu().to(dtype) if isinstance(values, torch.Tensor) else torch.as_tensor(values, dtype=dtype)


def train_clip_head(
    embeddings: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    eval_embeddings: torch.Tensor | np.ndarray | None = None,
    eval_labels: torch.Tensor | np.ndarray | None = None,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
) -> tuple[nn.Linear, float]:
    """Train ``Linear(D, 8)`` on (N, D) embeddings and (N,) emotion ids; returns it (CPU, float32) and its accuracy.

    The accuracy is on ``eval_embeddings``/``eval_labels`` when given (the
    held-out number to compare with the paper's 83%), else on the training set.
    Deterministic for a seed on CPU: zero init, seeded shuffling.
    """
    x = _as_tensor(embeddings, torch.float64)
    y = _as_tensor(labels, torch.long)
    if x.dim() != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise UsageError(
            f"train_clip_head: expected (N, D) embeddings and (N,) labels, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if int(y.min()) < 0 or int(y.max()) >= NUM_EMOTIONS:
        raise UsageError(f"train_clip_head: labels must be emotion ids 0-{NUM_EMOTIONS - 1}")
    centre = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False).clamp_min(1e-12)
    standard = ((x - centre) / scale).float().to(device)
    y = y.to(device)
    linear = nn.Linear(x.shape[1], NUM_EMOTIONS).to(device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="CLIP emotion head", disable=not show_progress, leave=False):
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        for start in range(0, x.shape[0], batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(linear(standard[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    head = fold_standardisation(linear.cpu(), centre, scale)
    if eval_embeddings is None or eval_labels is None:
        eval_embeddings, eval_labels = embeddings, labels
    predictions = emotion_probabilities(head, eval_embeddings).argmax(dim=1)
    accuracy = float((predictions == _as_tensor(eval_labels, torch.long)).double().mean())
    return head, accuracy


def fold_standardisation(linear: nn.Linear, centre: torch.Tensor, scale: torch.Tensor) -> nn.Linear:
    """``Linear`` on raw x equal to ``linear`` on (x - centre) / scale: W' = W / scale, b' = b - W' centre (float64)."""
    weight = linear.weight.detach().double() / scale.double()[None, :]
    bias = linear.bias.detach().double() - weight @ centre.double()
    head = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        head.bias.copy_(bias.float())
    return head.eval().requires_grad_(False)


@torch.no_grad()
def emotion_probabilities(
    head: nn.Module, embeddings: torch.Tensor | np.ndarray, batch_size: int = 8192
) -> torch.Tensor:
    """Softmax of the head over (N, D) embeddings: (N, 8) float32 on CPU."""
    x = _as_tensor(embeddings, torch.float32)
    parts = [torch.softmax(head(x[i : i + batch_size]).float(), dim=1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, NUM_EMOTIONS)


def load_official_head(store: WeightStore | None = None) -> nn.Linear:
    """The released CLIP-space emotion head (artifact ``emo-head-clip``) as ``Linear(768, 8)``, frozen."""
    return load_artifact("emo-head-clip", store if store is not None else open_store()).value.fc


def save_clip_head(head: nn.Linear, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the head in the released layout (``fc.weight``, ``fc.bias``), loadable as ``emo-head-clip``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    state = {
        "fc.weight": head.weight.detach().cpu().float().clone(),
        "fc.bias": head.bias.detach().cpu().float().clone(),
    }
    with atomic_writer(path) as handle:
        torch.save(state, handle)
    return path


def load_clip_head(path: str | Path) -> nn.Linear:
    """A head written by :func:`save_clip_head` (or the released file), strictly checked."""
    return load_emotion_head(path).fc


# ---- CLIP embeddings of EmoSet -------------------------------------------------------------------------------


def load_clip(store: WeightStore | None = None) -> tuple[nn.Module, ClipPixelSettings]:
    """The pinned CLIP ViT-L/14 vision tower (artifact ``clip-vit-l14``) and its pixel settings."""
    loaded = load_artifact("clip-vit-l14", store if store is not None else open_store())
    return loaded.value, load_clip_pixel_settings(loaded.resolved.path)


class ClipPixels:
    """PIL image -> the benchmark's CLIP pixels (3, H, W), a picklable transform for data-loader workers."""

    def __init__(self, settings: ClipPixelSettings) -> None:
        self.settings = settings

    def __call__(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(clip_pixels(np.asarray(image.convert("RGB"), dtype=np.uint8), self.settings))


def clip_embeddings(
    rows: Sequence[IndexRow],
    emoset_root: str | Path,
    model: nn.Module,
    settings: ClipPixelSettings,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> torch.Tensor:
    """Projected CLIP image embeddings (N, D) float32 of the rows' images, in row order."""
    dataset = EmoSetImages(rows, emoset_root, ClipPixels(settings))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    model.eval()
    parts = []
    with torch.no_grad():
        for images, _, _ in tqdm(loader, desc="CLIP embeddings", disable=not show_progress, leave=False):
            parts.append(clip_image_embeddings(model, images.to(device)).float().cpu())
    return torch.cat(parts) if parts else torch.empty(0, 0)


# ---- attribute confidence tables -----------------------------------------------------------------------------


def attribute_confidence(probs: torch.Tensor | np.ndarray, attributes: Sequence[str]) -> ConfidenceTable:
    """attribute -> (8,) float32: the mean emotion probabilities of the images with that attribute (float64 sums)."""
    p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != NUM_EMOTIONS or p.shape[0] != len(attributes):
        raise UsageError(
            f"attribute_confidence: expected ({len(attributes)}, {NUM_EMOTIONS}) probabilities, got {p.shape}"
        )
    names, inverse = np.unique(np.asarray(attributes, dtype=object).astype(str), return_inverse=True)
    sums = np.zeros((len(names), NUM_EMOTIONS))
    np.add.at(sums, inverse, p)
    counts = np.bincount(inverse, minlength=len(names))
    return {str(name): (sums[i] / counts[i]).astype(np.float32) for i, name in enumerate(names)}


def attribute_counts(attributes: Iterable[str]) -> dict[str, int]:
    """Images per attribute (how much each table row averages)."""
    counts: dict[str, int] = {}
    for name in attributes:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _emotion_index(emotion: str | int) -> int:
    if isinstance(emotion, int) and not isinstance(emotion, bool) and 0 <= emotion < NUM_EMOTIONS:
        return emotion
    if isinstance(emotion, str) and emotion in EMOTION_IDS:
        return EMOTION_IDS[emotion]
    raise UsageError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTION_NAMES)} or its id 0-7")


def confidence_for(
    table: Mapping[str, np.ndarray], attribute: str, emotion: str | int, *, threshold: float = 0.0
) -> float:
    """The emotion confidence ``a`` of an image with ``attribute`` and ``emotion``.

    As in the released training: 0 for an attribute the table lacks, and 0
    when the confidence is below ``threshold`` (the released default 0
    filters nothing).
    """
    row = table.get(attribute)
    if row is None:
        return 0.0
    value = float(row[_emotion_index(emotion)])
    return value if value >= threshold else 0.0


def filter_attributes(
    table: Mapping[str, np.ndarray], emotions: Iterable[str | int] = EMOTION_NAMES, threshold: float = 0.0
) -> dict[str, list[str]]:
    """emotion -> the attributes whose confidence for it is >= ``threshold``, most confident first."""
    kept = {}
    for emotion in emotions:
        index = _emotion_index(emotion)
        scored = [(float(row[index]), name) for name, row in table.items() if float(row[index]) >= threshold]
        kept[EMOTION_NAMES[index]] = [name for _, name in sorted(scored, key=lambda item: (-item[0], item[1]))]
    return kept


def merge_tables(
    tables: Mapping[str, Mapping[str, np.ndarray]], order: Sequence[str] = RELEASED_MERGE_ORDER
) -> ConfidenceTable:
    """One table from per-kind tables; a name in several kinds takes the LAST kind's row in ``order``.

    The default reproduces the released ``get_coefficient()``: the object
    table overrides the scene table for the names in both (e.g. tower, castle).
    """
    missing = [kind for kind in order if kind not in tables]
    if missing:
        raise UsageError(f"merge_tables: no table for {', '.join(missing)}; have {', '.join(tables)}")
    merged: ConfidenceTable = {}
    for kind in order:
        merged.update({name: np.asarray(row, dtype=np.float32) for name, row in tables[kind].items()})
    return merged


def official_confidence_table(store: WeightStore | None = None) -> ConfidenceTable:
    """The released tables (artifact ``attr-coefficients``), merged as the released training merges them."""
    return merge_tables(load_artifact("attr-coefficients", store if store is not None else open_store()).value)


def save_confidence_table(
    table: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    counts: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the table as JSON (float32 values written exactly; ``extra``: provenance such as the head's accuracy)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    document = {
        "format": TABLE_FORMAT,
        "format_version": TABLE_FORMAT_VERSION,
        "emotions": list(EMOTION_NAMES),
        "table": {name: [float(v) for v in np.asarray(row, dtype=np.float32)] for name, row in sorted(table.items())},
        "counts": dict(counts or {}),
        **dict(extra or {}),
    }
    return write_json_atomic(path, document, indent=1)


def load_confidence_table(path: str | Path) -> ConfidenceTable:
    """Read a table written by :func:`save_confidence_table`; every row must be 8 finite numbers in [0, 1]."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the emotion-confidence table ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc}); write the table again") from exc
    if not isinstance(document, dict) or document.get("format") != TABLE_FORMAT:
        raise WeightsError(f'{path}: not an emotion-confidence table (expected "format": "{TABLE_FORMAT}")')
    if document.get("format_version") != TABLE_FORMAT_VERSION or document.get("emotions") != list(EMOTION_NAMES):
        raise WeightsError(f"{path}: table version or emotion order differs from this release's; write it again")
    table = {}
    for name, row in document.get("table", {}).items():
        values = np.asarray(row, dtype=np.float32)
        if values.shape != (NUM_EMOTIONS,) or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise WeightsError(f"{path}: attribute {name!r}: expected {NUM_EMOTIONS} probabilities, found {row!r}")
        table[name] = values
    return table
