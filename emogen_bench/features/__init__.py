"""Feature extractors: each metric's model with its protocol preprocessing, one module per extractor.

``build_extractors(names, store)`` loads the pinned weights through the weights
registry (hashes checked, nothing downloaded) and returns ready extractors;
every missing artifact is reported at once, before any model is loaded or any
image read.  ``tiny_extractors()`` returns seeded toy models with the same
interface for the demo and the tests, labelled as smoke runs.  Both take a
``protocol``: under ``emogen-paper-code`` the Inception extractor is its
released-code variant (:mod:`emogen_bench.features.paper_code`), under the same
name and weights but another preprocessing (so other cache entries).
Extractors never parse command lines and never touch the feature cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor, run_fixed_batches
from emogen_bench.features.tiny import tiny_extractors
from emogen_bench.protocols import PAPER_CODE, get_protocol
from emogen_bench.task import PROTOCOL
from emogen_bench.weights import LoadedArtifact, WeightStore, load_artifact, open_store

#: Every extractor, in the order the pipeline runs them.
EXTRACTOR_NAMES: tuple[str, ...] = ("inception", "clip", "semantic", "emoset", "lpips")

#: The extractors each metric key reads.
METRIC_EXTRACTORS: dict[str, tuple[str, ...]] = {
    "fid": ("inception",),
    "kid": ("inception",),
    "lpips": ("lpips",),
    "emo_a": ("clip",),
    "emo_a_resnet50": ("emoset",),
    "sem_c": ("semantic",),
    "sem_d": ("clip",),
}



def metric_extractors(metric: str, protocol: str = PROTOCOL) -> tuple[str, ...]:
    """The extractors whose models ``metric`` needs under ``protocol`` (main pass and pair stage together)."""
    spec = get_protocol(protocol).spec(metric)
    return spec.pass_extractors + spec.pair_extractors


#: The weights-registry artifacts each extractor loads.
ARTIFACTS_BY_EXTRACTOR: dict[str, tuple[str, ...]] = {
    "inception": ("inception-fid",),
    "clip": ("clip-vit-l14", "emo-head-clip"),
    "semantic": ("resnet50-imagenet-v1", "resnet50-places365"),
    "emoset": ("emo-resnet50-emoset",),
    "lpips": ("alexnet-lpips-trunk", "lpips-alex-v0.1"),
}


def _digests(loaded: Mapping[str, LoadedArtifact]) -> dict[str, str]:
    return {artifact_id: artifact.resolved.digest for artifact_id, artifact in loaded.items()}


def _inception(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.inception import InceptionExtractor

    return InceptionExtractor(loaded["inception-fid"].value, _digests(loaded))


def _inception_paper_code(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.paper_code import PaperCodeInceptionExtractor

    return PaperCodeInceptionExtractor(loaded["inception-fid"].value, _digests(loaded))


def _clip(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.clip import ClipExtractor
    from emogen_bench.models.clip import load_clip_pixel_settings

    snapshot = loaded["clip-vit-l14"]
    settings = load_clip_pixel_settings(snapshot.resolved.path)
    return ClipExtractor(snapshot.value, settings, loaded["emo-head-clip"].value, _digests(loaded))


def _semantic(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.semantic import SemanticExtractor

    return SemanticExtractor(loaded["resnet50-imagenet-v1"].value, loaded["resnet50-places365"].value, _digests(loaded))


def _emoset(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.emoset import EmoSetExtractor

    return EmoSetExtractor(loaded["emo-resnet50-emoset"].value, _digests(loaded))


def _lpips(loaded: Mapping[str, LoadedArtifact]) -> FeatureExtractor:
    from emogen_bench.features.lpips import LpipsExtractor
    from emogen_bench.models.lpips_alex import build_lpips_alex

    model = build_lpips_alex(loaded["alexnet-lpips-trunk"].value, loaded["lpips-alex-v0.1"].value)
    return LpipsExtractor(model, _digests(loaded))


_BUILDERS: dict[str, Callable[[Mapping[str, LoadedArtifact]], FeatureExtractor]] = {
    "inception": _inception,
    "clip": _clip,
    "semantic": _semantic,
    "emoset": _emoset,
    "lpips": _lpips,
}


#: Builders of the preprocessing variants that protocols ask for (``Protocol.variants``).
_VARIANT_BUILDERS: dict[tuple[str, str], Callable[[Mapping[str, LoadedArtifact]], FeatureExtractor]] = {
    ("inception", PAPER_CODE): _inception_paper_code,
}


def check_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list without repeats, in :data:`EXTRACTOR_NAMES` order; unknown names are a usage error."""
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in EXTRACTOR_NAMES]
    if unknown:
        raise UsageError(f"unknown extractor(s) {', '.join(unknown)}; expected some of {', '.join(EXTRACTOR_NAMES)}")
    return [name for name in EXTRACTOR_NAMES if name in wanted]


def check_artifacts(names: Iterable[str], store: WeightStore) -> None:
    """Raise one :class:`WeightsError` naming every missing or corrupt artifact the extractors need.

    Only the missing ones are resolved (and hashed) here; the others are
    checked when they are loaded.
    """
    needed = list(dict.fromkeys(a for name in check_names(names) for a in ARTIFACTS_BY_EXTRACTOR[name]))
    problems = []
    for artifact_id in needed:
        if store.is_present(artifact_id):
            continue
        try:
            store.resolve(artifact_id)
        except WeightsError as error:
            problems.append(str(error))
    if problems:
        head = f"{len(problems)} weight artifact(s) needed by the requested metrics are not available:\n  "
        raise WeightsError((head + "\n  ".join(problems)) if len(problems) > 1 else problems[0])


def build_extractors(
    names: Iterable[str] = EXTRACTOR_NAMES, store: WeightStore | None = None, *, protocol: str = PROTOCOL
) -> dict[str, FeatureExtractor]:
    """Load the pinned weights of the extractors ``names`` from ``store`` and build them (on the CPU).

    ``protocol`` picks the preprocessing variant (``emogen-paper-code``: the
    released code's Inception preprocessing).

    Every artifact goes through :func:`emogen_bench.weights.load_artifact`, so
    hashes are checked and nothing is downloaded; missing weights raise
    :class:`WeightsError` naming each missing artifact and how to fetch it,
    before anything is loaded.
    """
    wanted = check_names(names)
    builders = dict(_BUILDERS)
    for name, variant in get_protocol(protocol).variants.items():
        builders[name] = _VARIANT_BUILDERS[(name, variant)]
    store = store if store is not None else open_store()
    check_artifacts(wanted, store)
    extractors = {}
    for name in wanted:
        loaded = {artifact_id: load_artifact(artifact_id, store) for artifact_id in ARTIFACTS_BY_EXTRACTOR[name]}
        extractors[name] = builders[name](loaded)
    return extractors


__all__ = [
    "ARTIFACTS_BY_EXTRACTOR",
    "EXTRACTOR_NAMES",
    "METRIC_EXTRACTORS",
    "ExtractorInfo",
    "FeatureExtractor",
    "build_extractors",
    "check_artifacts",
    "check_names",
    "metric_extractors",
    "run_fixed_batches",
    "tiny_extractors",
]
