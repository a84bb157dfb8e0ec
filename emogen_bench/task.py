"""The EICG task and every protocol constant, in one place.

The command line and the Python API both read their defaults from here, so a
number that defines the benchmark is written exactly once.  Changing any value
that alters a printed number requires a protocol version bump (see CHANGELOG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Polarity = Literal["positive", "negative"]


@dataclass(frozen=True)
class Emotion:
    """One emotion category; ``id`` is the class index of every emotion classifier."""

    id: int
    name: str
    polarity: Polarity


#: The eight emotions in EmoSet's label order (id = class index).
EMOTIONS: tuple[Emotion, ...] = (
    Emotion(0, "amusement", "positive"),
    Emotion(1, "awe", "positive"),
    Emotion(2, "contentment", "positive"),
    Emotion(3, "excitement", "positive"),
    Emotion(4, "anger", "negative"),
    Emotion(5, "disgust", "negative"),
    Emotion(6, "fear", "negative"),
    Emotion(7, "sadness", "negative"),
)
EMOTION_NAMES: tuple[str, ...] = tuple(e.name for e in EMOTIONS)
EMOTION_IDS: dict[str, int] = {e.name: e.id for e in EMOTIONS}


def emotion(name: str) -> Emotion:
    """Look an emotion up by name; raises ``KeyError`` naming the valid choices."""
    try:
        return EMOTIONS[EMOTION_IDS[name]]
    except KeyError:
        raise KeyError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTION_NAMES)}") from None


#: Protocol identity, recorded in every result.
PROTOCOL_NAME = "eicg"
PROTOCOL_VERSION = 3
PROTOCOL = f"{PROTOCOL_NAME}-v{PROTOCOL_VERSION}"


@dataclass(frozen=True)
class SubmissionPolicy:
    """What a submission must look like under the protocol.

    ``images_per_emotion`` is exact, not a minimum: a method may not generate
    more and keep its best.  A declared smaller run (``--per-emotion N``) uses N
    instead and is labelled as such everywhere.
    """

    images_per_emotion: int = 1000
    min_images_per_emotion: int = 2
    image_extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg")
    #: PIL format names accepted for those extensions.
    image_formats: tuple[str, ...] = ("PNG", "JPEG")
    #: Smallest accepted side in pixels; protocol preprocessing never upsamples
    #: by more than 2x from here (LPIPS works at 512, CLIP at 224, Inception at 299).
    min_side: int = 256
    #: Largest accepted side in pixels, checked from the header before any pixel is decoded: a small
    #: file may declare a huge image (a 490 KB PNG of 13000x13000 decodes to 500 MB).
    max_side: int = 4096
    #: Accepted PIL modes.  8-bit RGB is the norm; 8-bit grayscale is accepted
    #: (converted to RGB, with a warning).  Alpha, palette, 16-bit, float and CMYK
    #: modes are refused: the benchmark will not guess a background or a palette.
    accepted_modes: tuple[str, ...] = ("RGB", "L")
    metadata_file: str = "submission.json"
    #: Files that operating systems drop into folders; ignored with a warning.
    ignored_files: tuple[str, ...] = (".DS_Store", "Thumbs.db", "desktop.ini")


SUBMISSION = SubmissionPolicy()


@dataclass(frozen=True)
class DataPolicy:
    """How the EICG subset is derived from EmoSet (PROTOCOL.md section 2)."""

    split_files: tuple[str, ...] = ("train.json", "val.json", "test.json")
    splits: tuple[str, ...] = ("train", "val", "test")
    index_format_version: int = 1


DATA = DataPolicy()

#: Default seed of every seeded procedure (bootstraps, sampling, oversampling).
DEFAULT_SEED = 0

#: Metric keys, in the order tables show them; used by ``--metrics`` and in results JSON.
METRIC_KEYS: tuple[str, ...] = ("fid", "kid", "lpips", "emo_a", "emo_a_resnet50", "sem_c", "sem_d")
#: Display names of the metric keys, and which are lower-is-better and shown as percentages.
METRIC_LABELS: dict[str, str] = {
    "fid": "FID",
    "kid": "KID",
    "lpips": "LPIPS",
    "emo_a": "Emo-A",
    "emo_a_resnet50": "Emo-A (ResNet-50)",
    "sem_c": "Sem-C",
    "sem_d": "Sem-D",
}
LOWER_IS_BETTER = frozenset({"fid", "kid"})
PERCENT_METRICS = frozenset({"emo_a", "emo_a_resnet50"})


@dataclass(frozen=True)
class MetricProtocol:
    """How each metric is computed under ``eicg-v3``; every value here changes printed numbers."""

    #: FID/KID: clean-fid "clean" resize (PIL bicubic per channel in float) to this square size.
    inception_size: int = 299
    #: LPIPS: shorter side resized (bicubic) and centre-cropped to this square; 512x512 is untouched.
    lpips_size: int = 512
    #: ResNets (ImageNet, Places365, EmoSet): resize shorter side to 256, centre crop 224.
    resnet_resize: int = 256
    resnet_crop: int = 224
    #: KID: polynomial kernel (d^-1 x.y + 1)^3, unbiased MMD^2 averaged over seeded subsets.
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    #: Reference features kept per emotion for KID (a seeded sample of the reference set).
    kid_reference_per_emotion: int = 2000
    #: Confidence intervals: 95%, percentile bootstrap over images (seeded) for means of per-image
    #: values; Wilson score for accuracies; delete-a-group jackknife for the all-pairs diversities.
    ci_level: float = 0.95
    bootstrap_samples: int = 1000
    jackknife_groups: int = 20
    #: Models always run on batches of exactly this many images (the last one padded), so a
    #: feature never depends on the loader's batch size or on the images beside it.
    model_batch: int = 16


METRICS = MetricProtocol()
