"""The emotion space: one diagonal Gaussian per emotion over the encoder's 768-d features, and how well it fits.

:func:`fit_space` streams the features of a data set through the encoder and
accumulates, per emotion, the mean and the unbiased standard deviation in
float64 (Chan's pairwise update, so no feature matrix is kept), as the released
``emo_space/prepare.py`` computes them with ``torch.mean`` / ``torch.std``.
:func:`space_report` measures what the supplement only asserts: how Gaussian
each emotion's features are (per-dimension skewness, excess kurtosis, and the
Kolmogorov-Smirnov distance to the fitted normal) and how far apart the
emotions are (Bhattacharyya distances between the diagonal Gaussians, and the
accuracy of classifying the features by nearest mean and by Gaussian likelihood).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from scipy.special import ndtr
from torch import nn
from tqdm.auto import tqdm

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.fileio import write_atomic
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES
from emogen_bench.weights import WeightStore, load_artifact, open_store

SPACE_FORMAT = "emogen-bench.reference.emotion-space"
SPACE_FORMAT_VERSION = 1


def _emotion_name(emotion: str | int) -> str:
    if isinstance(emotion, int) and not isinstance(emotion, bool) and 0 <= emotion < len(EMOTION_NAMES):
        return EMOTION_NAMES[emotion]
    if isinstance(emotion, str) and emotion in EMOTION_IDS:
        return emotion
    raise UsageError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTION_NAMES)} or its id 0-7")


@dataclass
class EmotionSpace:
    """Per emotion the mean and the unbiased std of its encoder features, float32 tensors of shape (D,).

    ``counts``: features per emotion (0 where unknown, e.g. the release);
    ``source``: where the statistics come from (a file, an artifact digest).
    """

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]
    counts: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if sorted(self.mean) != sorted(self.std) or not self.mean:
            raise UsageError("EmotionSpace: mean and std must hold the same, non-empty set of emotions")
        for emotion in self.mean:
            _emotion_name(emotion)
            if self.mean[emotion].shape != self.std[emotion].shape or self.mean[emotion].dim() != 1:
                raise UsageError(f"EmotionSpace: {emotion}: mean and std must be vectors of one size")

    @property
    def emotions(self) -> tuple[str, ...]:
        """The emotions present, in ``task.EMOTION_NAMES`` order."""
        return tuple(e for e in EMOTION_NAMES if e in self.mean)

    @property
    def dim(self) -> int:
        return int(next(iter(self.mean.values())).shape[0])

    def sample(self, emotion: str | int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` emotion features (n, D) float32: one independent normal draw per dimension (the released sampling)."""
        name = _emotion_name(emotion)
        if name not in self.mean:
            raise UsageError(f"the emotion space has no statistics for {name}")
        noise = torch.randn((n, self.dim), generator=generator, dtype=torch.float32)
        return self.mean[name].float() + self.std[name].float() * noise

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write a safetensors file (``<emotion>.mean`` / ``<emotion>.std``; format, counts, source as metadata)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise UsageError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
        tensors = {
            f"{e}.{stat}": getattr(self, stat)[e].float().contiguous()
            for e in self.emotions
            for stat in ("mean", "std")
        }
        metadata = {
            "format": SPACE_FORMAT,
            "format_version": str(SPACE_FORMAT_VERSION),
            "emotions": json.dumps(list(self.emotions)),
            "counts": json.dumps({e: int(self.counts.get(e, 0)) for e in self.emotions}),
            "source": self.source,
        }
        write_atomic(path, save_safetensors_bytes(tensors, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmotionSpace:
        """Read a file written by :meth:`save`; wrong format or damaged files are a :class:`WeightsError`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the emotion-space file ({exc.strerror or exc})") from exc
        try:
            tensors = load_safetensors_bytes(data)
            header_len = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        except (SafetensorError, ValueError) as exc:
            raise WeightsError(f"{path}: not a safetensors emotion-space file ({exc}); write it again") from exc
        if metadata.get("format") != SPACE_FORMAT or metadata.get("format_version") != str(SPACE_FORMAT_VERSION):
            raise WeightsError(
                f"{path}: not an emotion-space file of this release (format {metadata.get('format')!r} version "
                f"{metadata.get('format_version')!r}; expected {SPACE_FORMAT} {SPACE_FORMAT_VERSION})"
            )
        emotions = json.loads(metadata["emotions"])
        missing = [f"{e}.{s}" for e in emotions for s in ("mean", "std") if f"{e}.{s}" not in tensors]
        if missing:
            raise WeightsError(f"{path}: tensors missing: {', '.join(missing)}; write the file again")
        return cls(
            mean={e: tensors[f"{e}.mean"] for e in emotions},
            std={e: tensors[f"{e}.std"] for e in emotions},
            counts={e: int(n) for e, n in json.loads(metadata.get("counts", "{}")).items()},
            source=metadata.get("source", ""),
        )


def load_official_space(store: WeightStore | None = None) -> EmotionSpace:
    """The released statistics (artifact ``emo-space``: ``<emotion>_{mean,std}_v2.pt``), cited by digest."""
    loaded = load_artifact("emo-space", store if store is not None else open_store())
    gaussians = loaded.value
    return EmotionSpace(
        mean={e: g.mean for e, g in gaussians.items()},
        std={e: g.std for e, g in gaussians.items()},
        source=f"emo-space {loaded.resolved.digest}",
    )


# ---- fitting -------------------------------------------------------------------------------------------------


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations of a stream of (n, D) batches, in float64 (Chan et al.)."""

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_m2 = ((batch - batch_mean) ** 2).sum(axis=0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, batch_mean, batch_m2
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def std(self) -> np.ndarray:
        """Unbiased (n - 1) standard deviation."""
        if self.m2 is None or self.count < 2:
            raise UsageError(f"an unbiased std needs at least 2 features; this emotion has {self.count}")
        return np.sqrt(self.m2 / (self.count - 1))


def encoded_batches(
    encoder: nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(features (B, D) float32 CPU, emotion ids (B,))`` for each ``(images, emotion ids, ...)`` batch.

    ``encoder`` must have ``encode`` (the ``fc_1`` output before the ReLU); it is put in eval mode.
    """
    encoder.eval()
    with torch.no_grad():
        for batch in tqdm(batches, desc="emotion features", disable=not show_progress, leave=False):
            images, labels = batch[0], batch[1]
            yield encoder.encode(images.to(device)).float().cpu(), torch.as_tensor(labels).cpu()


def fit_space(
    encoder: nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
    source: str = "",
) -> EmotionSpace:
    """Per-emotion mean and unbiased std of ``encoder.encode`` over ``batches`` (a DataLoader of EmoSetImages).

    Accumulated in float64, returned as float32; an emotion with fewer than 2
    images is an error (its std is undefined).
    """
    moments: dict[int, RunningMoments] = {}
    for features, labels in encoded_batches(encoder, batches, device=device, show_progress=show_progress):
        values = features.double().numpy()
        for emotion_id in labels.unique().tolist():
            moments.setdefault(int(emotion_id), RunningMoments()).update(values[(labels == emotion_id).numpy()])
    if not moments:
        raise UsageError("fit_space: the data set is empty")
    names = {EMOTION_NAMES[i]: m for i, m in sorted(moments.items())}
    return EmotionSpace(
        mean={e: torch.from_numpy(m.mean).float() for e, m in names.items()},  # type: ignore[arg-type]
        std={e: torch.from_numpy(m.std()).float() for e, m in names.items()},
        counts={e: m.count for e, m in names.items()},
        source=source,
    )


def collect_features(
    encoder: nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Every feature, grouped by emotion: emotion -> (n, D) float32 (for :func:`space_report`)."""
    grouped: dict[int, list[np.ndarray]] = {}
    for features, labels in encoded_batches(encoder, batches, device=device, show_progress=show_progress):
        for emotion_id in labels.unique().tolist():
            grouped.setdefault(int(emotion_id), []).append(features[labels == emotion_id].numpy())
    return {EMOTION_NAMES[i]: np.concatenate(parts) for i, parts in sorted(grouped.items())}


# ---- the report ----------------------------------------------------------------------------------------------


def moment_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension sample skewness and excess kurtosis (population moments) of (n, D) data, float64."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    variance = (centred**2).mean(axis=0)
    safe = np.where(variance > 0, variance, np.nan)
    skewness = (centred**3).mean(axis=0) / safe**1.5
    kurtosis = (centred**4).mean(axis=0) / safe**2 - 3.0
    return skewness, kurtosis


def ks_statistics(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-dimension Kolmogorov-Smirnov distance between the data (n, D) and N(mean_d, std_d^2)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=0)
    n = x.shape[0]
    cdf = ndtr((x - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64))
    ranks = np.arange(1, n + 1, dtype=np.float64)[:, None]
    return np.maximum((ranks / n - cdf).max(axis=0), (cdf - (ranks - 1) / n).max(axis=0))


def bhattacharyya_diagonal(mean1: np.ndarray, std1: np.ndarray, mean2: np.ndarray, std2: np.ndarray) -> float:
    """Bhattacharyya distance between two diagonal Gaussians, summed over dimensions (float64).

    D = 1/8 dmu^T S^-1 dmu + 1/2 ln(det S / sqrt(det S1 det S2)), S = (S1 + S2) / 2.
    """
    var1 = np.asarray(std1, dtype=np.float64) ** 2
    var2 = np.asarray(std2, dtype=np.float64) ** 2
    var = (var1 + var2) / 2.0
    delta = np.asarray(mean1, dtype=np.float64) - np.asarray(mean2, dtype=np.float64)
    return float((delta**2 / var).sum() / 8.0 + 0.5 * (np.log(var) - 0.5 * (np.log(var1) + np.log(var2))).sum())


def _classify(
    features: np.ndarray, means: np.ndarray, stds: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted emotion index per row: by nearest mean (Euclidean) and by diagonal-Gaussian log-likelihood."""
    nearest, likelihood = [], []
    log_norm = np.log(stds).sum(axis=1)[None]
    for start in range(0, features.shape[0], chunk):
        x = features[start : start + chunk].astype(np.float64)[:, None, :]
        nearest.append(((x - means[None]) ** 2).sum(axis=2).argmin(axis=1))
        likelihood.append((-0.5 * (((x - means[None]) / stds[None]) ** 2).sum(axis=2) - log_norm).argmax(axis=1))
    return np.concatenate(nearest), np.concatenate(likelihood)


def _finite_mean(values: np.ndarray) -> float | None:
    """Mean over the finite entries (constant dimensions have no skewness or kurtosis); None if there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def space_report(features_by_emotion: Mapping[str, np.ndarray | torch.Tensor], space: EmotionSpace) -> dict[str, Any]:
    """How well each emotion's diagonal Gaussian fits its features, and how the emotions separate (JSON-ready).

    ``fit``: per emotion the number of features, the mean |skewness|, the mean
    excess kurtosis (over the non-constant dimensions) and the mean and max KS
    distance to the space's normal over the dimensions (0 for Gaussian data;
    about 0.87/sqrt(n) from sampling alone).
    ``separation``: pairwise Bhattacharyya distances of the space's Gaussians,
    and the accuracy of nearest-mean and Gaussian-likelihood classification.
    """
    emotions = [e for e in space.emotions if e in features_by_emotion]
    if not emotions:
        raise UsageError("space_report: no emotion has both features and statistics")
    features = {e: np.asarray(features_by_emotion[e], dtype=np.float64) for e in emotions}
    means = np.stack([space.mean[e].double().numpy() for e in space.emotions])
    stds = np.stack([space.std[e].double().numpy() for e in space.emotions])
    fit = {}
    nearest_correct = likelihood_correct = total = 0
    per_emotion_accuracy = {}
    for e in emotions:
        x = features[e]
        index = space.emotions.index(e)
        skewness, kurtosis = moment_statistics(x)
        ks = ks_statistics(x, means[index], stds[index])
        fit[e] = {
            "n": int(x.shape[0]),
            "mean_abs_skewness": _finite_mean(np.abs(skewness)),
            "mean_excess_kurtosis": _finite_mean(kurtosis),
            "constant_dims": int(np.isnan(kurtosis).sum()),
            "mean_ks": float(ks.mean()),
            "max_ks": float(ks.max()),
        }
        nearest, likelihood = _classify(x, means, stds)
        nearest_correct += int((nearest == index).sum())
        likelihood_correct += int((likelihood == index).sum())
        total += x.shape[0]
        per_emotion_accuracy[e] = {
            "nearest_mean": float((nearest == index).mean()),
            "gaussian_likelihood": float((likelihood == index).mean()),
        }
    pairs = {
        f"{a}|{b}": bhattacharyya_diagonal(means[i], stds[i], means[j], stds[j])
        for i, a in enumerate(space.emotions)
        for j, b in enumerate(space.emotions)
        if i < j
    }
    return {
        "emotions": list(space.emotions),
        "dim": space.dim,
        "source": space.source,
        "fit": fit,
        "separation": {
            "bhattacharyya": pairs,
            "nearest_mean_accuracy": nearest_correct / total,
            "gaussian_likelihood_accuracy": likelihood_correct / total,
            "per_emotion_accuracy": per_emotion_accuracy,
        },
    }


def _cell(value: float | None) -> str:
    return f"{'n/a':>8}" if value is None else f"{value:>8.3f}"


def format_space_report(report: Mapping[str, Any]) -> str:
    """The report as plain-text tables: Gaussian fit per emotion, then Bhattacharyya distances and accuracies."""
    lines = [f"Emotion space ({report['dim']}-d){' from ' + report['source'] if report['source'] else ''}", ""]
    lines.append(f"{'emotion':<12} {'n':>7} {'|skew|':>8} {'ex.kurt':>8} {'KS mean':>8} {'KS max':>8} {'near.acc':>8}")
    separation = report["separation"]
    for emotion, row in report["fit"].items():
        acc = separation["per_emotion_accuracy"][emotion]["nearest_mean"]
        lines.append(
            f"{emotion:<12} {row['n']:>7d} {_cell(row['mean_abs_skewness'])} {_cell(row['mean_excess_kurtosis'])} "
            f"{_cell(row['mean_ks'])} {_cell(row['max_ks'])} {_cell(acc)}"
        )
    emotions = report["emotions"]
    lines += [
        "",
        "Bhattacharyya distance between the emotions' diagonal Gaussians",
        " " * 12 + "".join(f"{e[:8]:>9}" for e in emotions),
    ]
    for a in emotions:
        cells = []
        for b in emotions:
            key = f"{a}|{b}" if f"{a}|{b}" in separation["bhattacharyya"] else f"{b}|{a}"
            cells.append(f"{'-':>9}" if a == b else f"{separation['bhattacharyya'][key]:>9.2f}")
        lines.append(f"{a:<12}" + "".join(cells))
    lines += [
        "",
        f"nearest-mean accuracy: {separation['nearest_mean_accuracy']:.4f}",
        f"Gaussian-likelihood accuracy: {separation['gaussian_likelihood_accuracy']:.4f}",
        "KS: Kolmogorov-Smirnov distance of each dimension to its fitted normal (0: Gaussian; ~0.87/sqrt(n) by chance)",
    ]
    return "\n".join(lines) + "\n"
