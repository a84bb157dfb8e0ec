"""``emogen-paper-code``: what the EmoGen authors' released scripts compute, quirks included (docs/paper_code.md).

Files are read as the released scripts read them: FID (``metrics/FID.py``)
takes names ending in one of its image extensions, compared case-sensitively
(``.JPG`` and ``.PNG`` are skipped); Emo-A (``training/inference.py``), Sem-C,
LPIPS and Sem-D (``metrics/Semantic_metrics.py``) take only names ending in
``jpg``.  A metric none of whose files qualify is not computed, with the
reason (the released Sem-C divides by zero there).  LPIPS and Sem-D come from a
pair stage after the feature pass: seeded random pairs of ``*jpg`` files, only
those images decoded again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from emogen_bench.errors import UsageError
from emogen_bench.metrics import MetricValue
from emogen_bench.metrics.paper_code import PairPlan, pair_metric, pair_mse, paper_code_fid, sample_pairs
from emogen_bench.protocols.base import (
    Features,
    FileFilter,
    MetricSpec,
    MetricValues,
    Protocol,
    Quirk,
    Selection,
    emo_a_from_logits,
    emotions_of,
    empty_values,
    in_order,
    put,
    sem_c_from_features,
)
from emogen_bench.task import EMOTION_IDS

if TYPE_CHECKING:
    from emogen_bench.features.base import FeatureExtractor
    from emogen_bench.pipeline import ImageItem, PairScores
    from emogen_bench.reference_stats import ReferenceStats

PAPER_CODE = "emogen-paper-code"
#: ``ImageFolderDataset.IMG_EXTENSIONS`` of the released ``metrics/FID.py`` (matched with ``str.endswith``).
FID_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: The released FID's file filter.
FID_FILES = FileFilter(
    "names ending in " + " ".join(FID_EXTENSIONS) + " (case-sensitive, as metrics/FID.py)", FID_EXTENSIONS
)
#: The released Emo-A, Sem-C, LPIPS and Sem-D filter: ``file.endswith("jpg")``.
JPG_FILES = FileFilter("names ending in 'jpg' (case-sensitive, as the released scripts)", ("jpg",))
#: The metrics computed from sampled pairs.
PAIR_METRICS: tuple[str, ...] = ("lpips", "sem_d")


@dataclass(frozen=True)
class PairResults:
    """The pair stage: the sampled pairs, the emotion of each ``*jpg`` file, the model outputs.

    ``skipped`` counts the submission's files that the released code would not
    read (names not ending in ``jpg``).
    """

    plan: PairPlan
    file_emotions: tuple[str, ...]
    scores: PairScores
    skipped: int


def _with_skipped(result: tuple[MetricValue, dict[str, MetricValue]], skipped: int) -> Any:
    """Record beside the overall value how many files the metric's filter skipped (only when some were)."""
    overall, per_emotion = result
    if skipped:
        overall = replace(overall, extra={**overall.extra, "skipped_files": int(skipped)})
    return overall, per_emotion


class EmoGenPaperCodeProtocol(Protocol):
    """Mimics the released evaluation scripts so a new method can sit next to the published numbers."""

    name = PAPER_CODE
    version = 2
    title = "EmoGen released-code compatibility"
    comparable_to_published = True
    description = (
        "Mimics the EmoGen authors' released evaluation scripts, quirks included, so that a new method can be "
        "placed next to the published numbers (paper Table 1, supplement Table 1). Each metric reads the files "
        "the released script reads. Emo-A and Sem-C are computed as in eicg (the released Sem-C preprocessing is "
        "the same; the released Emo-A script crashes before printing, so the published Emo-A came from an "
        "unreleased version). Never compared with eicg."
    )
    specs = (
        MetricSpec("fid", ("inception",), reads=FID_FILES, min_files=2),
        MetricSpec("lpips", (), ("lpips",), reads=JPG_FILES, min_files=2),
        MetricSpec("emo_a", ("clip",), reads=JPG_FILES),
        MetricSpec("sem_c", ("semantic",), reads=JPG_FILES),
        MetricSpec("sem_d", (), ("clip",), reads=JPG_FILES, min_files=2),
    )
    variants = {"inception": PAPER_CODE}
    quirks = (
        Quirk(
            "fid",
            "images resized to 299x299 with torchvision Resize (bilinear), fed as [0,1] tensors to torchmetrics' "
            "FID with normalize=True (rescaled to 0-255 and truncated to uint8)",
            "the resize filter alone moves FID by several points; clean-fid's resize is the corrected choice",
        ),
        Quirk(
            "fid",
            "statistics of the generated images of one emotion against every image of that emotion (every split; "
            "here every indexed image, while the released code also read EmoSet images without a scene or object "
            "label), and an aggregated FID from the pooled sums; trace term from eigenvalues of the non-symmetric "
            "product sigma1 @ sigma2 (torchmetrics' formulation)",
            "the reference set and the square root both shift the number",
        ),
        Quirk(
            "fid",
            "only names ending in " + "/".join(FID_EXTENSIONS) + ", compared case-sensitively (.JPG and .PNG are "
            "skipped)",
            "a submission saved with upper-case extensions gets no FID at all under the released code",
        ),
        Quirk(
            "lpips",
            "AlexNet LPIPS v0.1 fed images in [0,1] where it expects [-1,1], at full resolution",
            "halves the input contrast, so distances are smaller than a correct LPIPS",
        ),
        Quirk(
            "lpips, sem_d",
            "a few random pairs per emotion (10 in the released code; --pairs), seeded here; the pool of images "
            "is never reset, so emotion k samples pairs from emotions 1..k",
            "sampling noise and cross-emotion pairs inflate diversity for later emotions",
        ),
        Quirk(
            "lpips, sem_d, emo_a, sem_c",
            "only files whose name ends in 'jpg' are read (case-sensitive); with none, Emo-A and Sem-C are not "
            "computed (the released Sem-C divides by zero)",
            "a PNG submission gets no LPIPS, Sem-D, Emo-A or Sem-C at all under the released code",
        ),
        Quirk(
            "sem_d",
            "ToTensor images in [0,1] are passed to the CLIP image processor of transformers 4.34, which converts "
            "them back to 8 bits for its PIL resize and then divides by 255 again: CLIP sees nearly blank images "
            "(an image of only black and white escapes the second division); projected (not normalised) "
            "embeddings, MSE over the 768 dimensions",
            "why published Sem-D values are ~0.02-0.03; a corrected Sem-D is on another scale",
        ),
    )

    def plan_pairs(self, selection: Selection, items: Sequence[ImageItem], *, pairs: int, seed: int) -> None:
        """Sample the pairs over the ``*jpg`` files; if a pool is too small, LPIPS and Sem-D are not computed."""
        wanted = [m for m in PAIR_METRICS if m in selection.metrics]
        if not wanted:
            return
        files = [item for item in items if JPG_FILES(item.relpath)]
        present = sorted({item.emotion for item in items}, key=EMOTION_IDS.__getitem__)
        try:
            plan = sample_pairs([item.emotion for item in files], present, pairs, seed)
        except ValueError as error:
            reason = (
                f"{error}: under {PAPER_CODE} LPIPS and Sem-D read only files whose name ends in 'jpg', as the "
                f"released code does ({len(items) - len(files)} of {len(items)} files skipped); submit JPEG files "
                "named *.jpg"
            )
            selection.not_computed.update({m: reason for m in wanted})
            selection.metrics = tuple(m for m in selection.metrics if m not in wanted)
            for metric in wanted:
                selection.files.pop(metric, None)
            return
        selection.pair_plan, selection.pair_files, selection.pair_count = plan, files, pairs

    def score_pairs(
        self, selection: Selection, extractors: Mapping[str, FeatureExtractor], device: str
    ) -> PairResults | None:
        """LPIPS (inputs in [0, 1]) and the double-rescaled CLIP embeddings of the sampled pairs."""
        if selection.pair_plan is None:
            return None
        from emogen_bench.features.clip import ClipExtractor
        from emogen_bench.features.lpips import LpipsExtractor
        from emogen_bench.pipeline import score_pairs

        lpips_extractor, clip_extractor = extractors.get("lpips"), extractors.get("clip")
        if "lpips" in selection.metrics and not isinstance(lpips_extractor, LpipsExtractor):
            raise UsageError(f"the {PAPER_CODE} LPIPS needs the 'lpips' extractor to be an LpipsExtractor")
        if "sem_d" in selection.metrics and not isinstance(clip_extractor, ClipExtractor):
            raise UsageError(f"the {PAPER_CODE} Sem-D needs the 'clip' extractor to be a ClipExtractor")
        lpips_model = lpips_extractor.lpips_model if "lpips" in selection.metrics else None  # type: ignore[union-attr]
        clip = (
            (clip_extractor.vision_model, clip_extractor.pixel_settings)  # type: ignore[union-attr]
            if "sem_d" in selection.metrics else None
        )  # fmt: skip
        files = selection.pair_files
        scores = score_pairs(files, selection.pair_plan.pairs, lpips_model=lpips_model, clip=clip, device=device)
        skipped = selection.n_items - len(files)
        return PairResults(selection.pair_plan, tuple(item.emotion for item in files), scores, skipped)

    def compute(
        self, selection: Selection, features: Features, reference: ReferenceStats | None, pairs: Any, *, seed: int
    ) -> MetricValues:
        values = empty_values(selection)
        metrics, files = selection.metrics, selection.files

        def skipped(metric: str) -> int:
            return selection.n_items - len(files[metric])

        if "fid" in metrics and reference is not None:
            pool = features.of("fid", "inception")["pool"]
            result = paper_code_fid(pool, emotions_of(files["fid"]), reference.per_emotion, reference.pooled)
            put(values, "fid", _with_skipped(result, skipped("fid")))
        if "emo_a" in metrics:
            result = emo_a_from_logits(features.of("emo_a", "clip")["emotion_logits"], files["emo_a"])
            put(values, "emo_a", _with_skipped(result, skipped("emo_a")))
        if "sem_c" in metrics:
            result = sem_c_from_features(features.of("sem_c", "semantic"), files["sem_c"], seed)
            put(values, "sem_c", _with_skipped(result, skipped("sem_c")))
        for key in PAIR_METRICS:
            if key not in metrics:
                continue
            if pairs is None:
                raise ValueError(f"{key} under {PAPER_CODE} needs the pair stage's results")
            scores = pairs.scores.lpips if key == "lpips" else {e: pair_mse(v) for e, v in pairs.scores.clip.items()}
            put(values, key, pair_metric(scores, pairs.plan, pairs.file_emotions, seed=seed, skipped=pairs.skipped))
        return in_order(values, self.metrics)


EMOGEN_PAPER_CODE = EmoGenPaperCodeProtocol()
