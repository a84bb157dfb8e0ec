"""What a protocol is: which files each metric reads, which models its pass needs, and how numbers come out.

A :class:`Protocol` turns the validated images into a :class:`Selection` (the
files each metric reads, the extractors of the one feature pass, an optional
pair stage) and then the extracted features into metric values
(:meth:`Protocol.compute`).  ``evaluate()`` only runs that plan: it never asks
which protocol it is running.  A new protocol is one new module with a
subclass; the registry in :mod:`emogen_bench.protocols` names it.

The computations shared by protocols (Emo-A from classifier logits, Sem-C from
the two maximum probabilities) live here as small functions over the features.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.emo_a import emo_a
from emogen_bench.metrics.sem_c import sem_c
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES

if TYPE_CHECKING:
    from emogen_bench.features.base import FeatureExtractor
    from emogen_bench.metrics.pairwise import PairwiseSummary
    from emogen_bench.pipeline import ImageItem
    from emogen_bench.reference_stats import ReferenceStats

#: Overall value and per-emotion values of every computed metric.
MetricValues = tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]]]


@dataclass(frozen=True)
class Quirk:
    """One behaviour of the released code that a protocol reproduces on purpose."""

    metric: str
    what: str
    why: str

    def markdown(self) -> str:
        """The quirk as the README lists it (a test keeps the README in step with this registry)."""
        return f"- **{self.metric}**: {self.what}. *Why it matters:* {self.why}."


@dataclass(frozen=True)
class FileFilter:
    """Which of a submission's image files a metric reads, by name.

    ``suffixes=None`` reads every file; otherwise a file is read when its name
    ends in one of ``suffixes``, compared case-sensitively unless
    ``case_sensitive`` is false.
    """

    description: str
    suffixes: tuple[str, ...] | None = None
    case_sensitive: bool = True

    def __call__(self, relpath: str) -> bool:
        if self.suffixes is None:
            return True
        name = relpath if self.case_sensitive else relpath.lower()
        return name.endswith(self.suffixes)


#: Every image file the submission holds (what the benchmark's own protocol reads).
EVERY_FILE = FileFilter("every image file")


@dataclass(frozen=True)
class MetricSpec:
    """One metric under one protocol: the files it reads and the extractors it needs.

    ``pass_extractors`` run in the feature pass over ``reads``' files;
    ``pair_extractors`` lend their models to the protocol's pair stage.
    ``min_files`` is how many readable files it needs; fewer makes it "not
    computed" with the reason, never an error.
    """

    key: str
    pass_extractors: tuple[str, ...]
    pair_extractors: tuple[str, ...] = ()
    reads: FileFilter = EVERY_FILE
    min_files: int = 1


@dataclass
class Selection:
    """What one evaluation will read and compute, decided before any model is loaded.

    ``files[metric]`` are the items a metric reads, in canonical order, of the
    submission's ``n_items``;
    ``pair_plan`` and ``pair_files`` the protocol's pair stage (``None`` and
    empty when there is none); ``not_computed`` the reason for each requested
    metric left out.
    """

    metrics: tuple[str, ...]
    files: dict[str, list[ImageItem]]
    n_items: int
    not_computed: dict[str, str] = field(default_factory=dict)
    pair_plan: Any = None
    pair_files: list[ImageItem] = field(default_factory=list)
    pair_count: int | None = None


@dataclass
class Features:
    """The feature pass's output, per metric: ``of(metric, extractor)`` rows align with ``selection.files[metric]``."""

    by_metric: dict[str, dict[str, dict[str, np.ndarray]]]
    lpips: dict[str, PairwiseSummary]

    def of(self, metric: str, extractor: str) -> dict[str, np.ndarray]:
        return self.by_metric[metric][extractor]


def emotions_of(items: Sequence[ImageItem]) -> np.ndarray:
    """The emotion of each item, as an array (items are in canonical order)."""
    return np.array([item.emotion for item in items])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def emo_a_from_logits(logits: np.ndarray, items: Sequence[ImageItem]) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Emo-A of classifier logits against each item's target emotion."""
    targets = np.array([EMOTION_IDS[item.emotion] for item in items])
    return emo_a(softmax(logits), targets)


def sem_c_from_features(
    semantic: Mapping[str, np.ndarray], items: Sequence[ImageItem], seed: int
) -> tuple[MetricValue, dict[str, MetricValue]]:
    """Sem-C from the ImageNet and Places365 maximum probabilities of each item."""
    return sem_c(semantic["imagenet_max_prob"], semantic["places_max_prob"], emotions_of(items), seed=seed)


class Protocol(ABC):
    """A named, versioned way of computing the metrics.

    Subclasses set the class attributes and implement :meth:`compute`; those
    with a pair stage override :meth:`plan_pairs` and :meth:`score_pairs`.
    ``variants`` maps an extractor name to the preprocessing variant this
    protocol builds it with (``build_extractors`` and ``tiny_extractors`` read it).
    """

    name: str
    version: int
    title: str
    description: str
    comparable_to_published: bool
    specs: tuple[MetricSpec, ...]
    quirks: tuple[Quirk, ...] = ()
    variants: Mapping[str, str] = {}

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric keys this protocol defines, in table order."""
        return tuple(spec.key for spec in self.specs)

    def spec(self, metric: str) -> MetricSpec:
        for spec in self.specs:
            if spec.key == metric:
                return spec
        raise KeyError(f"metric {metric!r} is not defined under protocol {self.name}")

    def select(
        self, items: Sequence[ImageItem], metrics: Sequence[str], *, pairs: int, seed: int
    ) -> Selection:
        """The files each metric reads; a metric with too few readable files is left out, with the reason."""
        files: dict[str, list[ImageItem]] = {}
        not_computed: dict[str, str] = {}
        for metric in metrics:
            spec = self.spec(metric)
            chosen = [item for item in items if spec.reads(item.relpath)]
            if len(chosen) < spec.min_files:
                not_computed[metric] = (
                    f"under {self.name} {metric} reads {spec.reads.description}: {len(chosen)} of {len(items)} "
                    f"files qualify, and it needs at least {spec.min_files}"
                )
                continue
            files[metric] = chosen
        kept = tuple(m for m in metrics if m in files)
        selection = Selection(metrics=kept, files=files, n_items=len(items), not_computed=not_computed)
        self.plan_pairs(selection, items, pairs=pairs, seed=seed)
        return selection

    def pass_groups(self, selection: Selection) -> list[tuple[list[ImageItem], tuple[str, ...]]]:
        """The feature pass as ``(files, extractors)`` groups: each extractor runs once on the union of its
        metrics' files; extractors with the same files share one pass (one decode per image)."""
        files_of: dict[str, dict[str, ImageItem]] = {}
        for metric in selection.metrics:
            for name in self.spec(metric).pass_extractors:
                for item in selection.files[metric]:
                    files_of.setdefault(name, {})[item.relpath] = item
        groups: dict[tuple[str, ...], list[str]] = {}
        for name, chosen in sorted(files_of.items()):
            groups.setdefault(tuple(sorted(chosen)), []).append(name)
        return [
            ([files_of[names[0]][relpath] for relpath in key], tuple(names))
            for key, names in sorted(groups.items(), key=lambda kv: kv[1])
        ]

    def extractor_names(self, selection: Selection) -> list[str]:
        """Every extractor whose model the evaluation needs (pass and pair stage), sorted."""
        names = {n for m in selection.metrics for n in self.spec(m).pass_extractors}
        if selection.pair_plan is not None:
            names |= {n for m in selection.metrics for n in self.spec(m).pair_extractors}
        return sorted(names)

    def plan_pairs(self, selection: Selection, items: Sequence[ImageItem], *, pairs: int, seed: int) -> None:
        """Decide the pair stage (none by default)."""

    def score_pairs(
        self, selection: Selection, extractors: Mapping[str, FeatureExtractor], device: str
    ) -> Any:
        """Run the pair stage's models on the planned pairs (none by default)."""
        return None

    @abstractmethod
    def compute(
        self,
        selection: Selection,
        features: Features,
        reference: ReferenceStats | None,
        pairs: Any,
        *,
        seed: int,
    ) -> MetricValues:
        """Pure step: features of the selected files -> overall and per-emotion metric values."""


def empty_values(selection: Selection) -> MetricValues:
    """Containers for the values of the emotions present in any selected file."""
    present = {item.emotion for chosen in selection.files.values() for item in chosen}
    return {}, {e: {} for e in EMOTION_NAMES if e in present}


def in_order(values: MetricValues, metrics: Sequence[str]) -> MetricValues:
    """The values with their keys in table order (the protocol's metric order)."""
    overall, per_emotion = values
    rank = {key: i for i, key in enumerate(metrics)}

    def ordered(mapping: dict[str, MetricValue]) -> dict[str, MetricValue]:
        return dict(sorted(mapping.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    return ordered(overall), {emotion: ordered(by_key) for emotion, by_key in per_emotion.items()}


def put(values: MetricValues, key: str, result: tuple[MetricValue, Mapping[str, MetricValue]]) -> None:
    """Store one metric's overall and per-emotion values."""
    overall, per_emotion = values
    overall[key] = result[0]
    for emotion, value in result[1].items():
        per_emotion.setdefault(emotion, {})[key] = value
