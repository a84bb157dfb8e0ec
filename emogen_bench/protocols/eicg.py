"""``eicg``: the benchmark's own protocol (CHANGELOG.md): every file, every image once, exact diversities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emogen_bench.metrics.fid import fid
from emogen_bench.metrics.kid import kid
from emogen_bench.metrics.lpips import lpips_diversity
from emogen_bench.metrics.sem_d import sem_d
from emogen_bench.protocols.base import (
    Features,
    MetricSpec,
    MetricValues,
    Protocol,
    Selection,
    emo_a_from_logits,
    emotions_of,
    empty_values,
    in_order,
    put,
    sem_c_from_features,
)
from emogen_bench.task import METRICS, PROTOCOL, PROTOCOL_VERSION

if TYPE_CHECKING:
    from emogen_bench.reference_stats import ReferenceStats


class EicgProtocol(Protocol):
    """Corrected definitions of the five metrics plus KID and the ResNet-50 Emo-A; every file is read."""

    name = PROTOCOL
    version = PROTOCOL_VERSION
    title = f"EICG benchmark protocol, version {PROTOCOL_VERSION}"
    comparable_to_published = False
    description = (
        "Corrected definitions: clean-fid resize and float64 FID against the derived subset, exact all-pairs "
        "LPIPS and Sem-D, KID per emotion, CLIP pixels through PIL as in transformers 4.x, confidence intervals. "
        "Not comparable with the paper's numbers."
    )
    specs = (
        MetricSpec("fid", ("inception",), min_files=2),
        MetricSpec("kid", ("inception",), min_files=2),
        MetricSpec("lpips", ("lpips",), min_files=2),
        MetricSpec("emo_a", ("clip",)),
        MetricSpec("emo_a_resnet50", ("emoset",)),
        MetricSpec("sem_c", ("semantic",)),
        MetricSpec("sem_d", ("clip",), min_files=2),
    )

    def compute(
        self, selection: Selection, features: Features, reference: ReferenceStats | None, pairs: Any, *, seed: int
    ) -> MetricValues:
        values = empty_values(selection)
        metrics, files = selection.metrics, selection.files
        if "fid" in metrics and reference is not None:
            pool, emotions = features.of("fid", "inception")["pool"], emotions_of(files["fid"])
            per_emotion = {
                e: fid(pool[emotions == e], reference.per_emotion[e], groups=None)
                for e in values[1] if (emotions == e).any()
            }  # fmt: skip
            put(values, "fid", (fid(pool, reference.pooled, groups=METRICS.jackknife_groups), per_emotion))
        if "kid" in metrics and reference is not None:
            pool, emotions = features.of("kid", "inception")["pool"], emotions_of(files["kid"])
            options = {"subsets": METRICS.kid_subsets, "subset_size": METRICS.kid_subset_size, "seed": seed}
            per_emotion = {
                e: kid(pool[emotions == e], reference.kid_sample[e], **options)
                for e in values[1] if (emotions == e).any()
            }  # fmt: skip
            put(values, "kid", (kid(pool, reference.kid_pooled, **options), per_emotion))
        if "lpips" in metrics:
            put(values, "lpips", lpips_diversity({e: features.lpips[e] for e in features.lpips}))
        if "emo_a" in metrics:
            put(values, "emo_a", emo_a_from_logits(features.of("emo_a", "clip")["emotion_logits"], files["emo_a"]))
        if "emo_a_resnet50" in metrics:
            logits = features.of("emo_a_resnet50", "emoset")["logits"]
            put(values, "emo_a_resnet50", emo_a_from_logits(logits, files["emo_a_resnet50"]))
        if "sem_c" in metrics:
            put(values, "sem_c", sem_c_from_features(features.of("sem_c", "semantic"), files["sem_c"], seed))
        if "sem_d" in metrics:
            embeddings, emotions = features.of("sem_d", "clip")["embedding"], emotions_of(files["sem_d"])
            present = [e for e in values[1] if (emotions == e).any()]
            put(values, "sem_d", sem_d({e: embeddings[emotions == e] for e in present}))
        return in_order(values, self.metrics)


EICG = EicgProtocol()
