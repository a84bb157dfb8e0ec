"""The evaluation protocols: one name per way of computing the numbers, never mixed in one column.

``eicg-v1`` is the benchmark's own definition (CHANGELOG.md).  ``emogen-paper-code``
reproduces what the EmoGen authors' released scripts compute, quirks included
(PROTOCOL.md section 3), so a new method can be placed next to the published
numbers; each quirk it reproduces is listed here, with why it matters, and the
README prints this list.  Results, reference statistics and leaderboard entries
all record their protocol; nothing compares numbers across protocols.
"""

from __future__ import annotations

from dataclasses import dataclass

from emogen_bench.errors import UsageError
from emogen_bench.task import METRIC_KEYS, PROTOCOL

PAPER_CODE = "emogen-paper-code"


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
class Protocol:
    """A named way of computing the metrics.

    ``metrics`` are the keys it defines (in table order); ``comparable_to_published``
    says whether its numbers may sit next to the paper's.
    """

    name: str
    title: str
    metrics: tuple[str, ...]
    comparable_to_published: bool
    description: str
    quirks: tuple[Quirk, ...] = ()


EICG_V1 = Protocol(
    name=PROTOCOL,
    title="EICG benchmark protocol, version 1",
    metrics=METRIC_KEYS,
    comparable_to_published=False,
    description=(
        "Corrected definitions: clean-fid resize and float64 FID against the derived subset, exact all-pairs "
        "LPIPS and Sem-D, KID per emotion, confidence intervals. Not comparable with the paper's numbers."
    ),
)

EMOGEN_PAPER_CODE = Protocol(
    name=PAPER_CODE,
    title="EmoGen released-code compatibility",
    metrics=("fid", "lpips", "emo_a", "sem_c", "sem_d"),
    comparable_to_published=True,
    description=(
        "Mimics the EmoGen authors' released evaluation scripts, quirks included, so that a new method can be "
        "placed next to the published numbers (paper Table 1, supplement Table 1). Emo-A and Sem-C are computed "
        "as in eicg-v1 (the released Sem-C preprocessing is the same; the released Emo-A script crashes before "
        "printing, so the published Emo-A came from an unreleased version). Never compared with eicg-v1."
    ),
    quirks=(
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
            "lpips, sem_d",
            "only files whose name ends in 'jpg' are read",
            "a PNG submission gets no LPIPS or Sem-D at all under the released code",
        ),
        Quirk(
            "sem_d",
            "images already scaled to [0,1] are passed to the CLIP image processor, which divides by 255 again: "
            "CLIP sees nearly blank images; projected (not normalised) embeddings, MSE over the 768 dimensions",
            "why published Sem-D values are ~0.02-0.03; a corrected Sem-D is on another scale",
        ),
    ),
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (EICG_V1, EMOGEN_PAPER_CODE)}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name is a usage error listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
