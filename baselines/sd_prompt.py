"""Stable Diffusion baseline: SD-1.5 as it is, prompted with the emotion word (PROTOCOL.md section 6).

Nothing is trained. The prompt of each emotion comes from a template set (:data:`PROMPT_TEMPLATES`,
documented in docs/baselines.md); with several templates, image ``i`` of an emotion uses template
``i % n``, so every template gets an equal share of the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.common import (
    PromptGenerateConfig,
    generate_from_prompts,
    prompt_config,
    settings_from_mapping,
)
from emogen_bench.errors import UsageError
from emogen_bench.task import EMOTION_NAMES
from reference.sd import SDComponents

NAME = "sd"
METHOD = "Stable Diffusion (emotion word in the prompt)"

#: Named template sets; ``{emotion}`` is replaced by the emotion word (``amusement``, ..., ``sadness``).
#: ``photo`` is the default: the same words as Textual Inversion's generation prompt ("a photo of <token>"),
#: so that the two baselines differ only in the emotion's embedding.
PROMPT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of {emotion}",),
    "word": ("{emotion}",),
    "evokes": ("a photo that evokes {emotion}",),
    "varied": (
        "a photo of {emotion}",
        "a photo that evokes {emotion}",
        "an image that makes people feel {emotion}",
        "a picture full of {emotion}",
    ),
}
DEFAULT_TEMPLATE_SET = "photo"


@dataclass(frozen=True)
class SDPromptSettings(PromptGenerateConfig):
    """Generation settings of the SD baseline: the sampler's (:class:`PromptGenerateConfig`) and the prompts.

    ``templates`` (each containing ``{emotion}``) replaces the named ``template_set`` when given.
    """

    template_set: str = DEFAULT_TEMPLATE_SET
    templates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.templates is None and self.template_set not in PROMPT_TEMPLATES:
            raise UsageError(
                f"sd setting template_set={self.template_set!r}: expected one of {', '.join(PROMPT_TEMPLATES)}"
            )
        bad = [t for t in self.chosen_templates() if "{emotion}" not in t]
        if bad or not self.chosen_templates():
            raise UsageError(
                f"sd setting templates: every template must contain {{emotion}} (got {bad or 'none'}), "
                "e.g. --set 'templates=a photo of {emotion}|a picture of {emotion}'"
            )

    def chosen_templates(self) -> tuple[str, ...]:
        """The templates in use: ``templates`` if given, else the named set."""
        return self.templates if self.templates is not None else PROMPT_TEMPLATES.get(self.template_set, ())


def emotion_prompts(templates: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Each emotion's prompts: every template with ``{emotion}`` filled in."""
    return {emotion: tuple(t.format(emotion=emotion) for t in templates) for emotion in EMOTION_NAMES}


class StableDiffusionBaseline:
    """``sd``: generation only; ``train`` is refused with a UsageError."""

    name = NAME
    trains = False

    def train(
        self,
        settings: Mapping[str, Any],
        index_dir: Path,
        emoset_root: Path,
        out_dir: Path,
        *,
        components: SDComponents,
        resume: bool = False,
    ) -> Path:
        """Refused: the SD baseline uses SD-1.5 as it is."""
        raise UsageError("the sd baseline has nothing to train; run `emogen-bench baseline sd generate` directly")

    def generate(
        self, settings: Mapping[str, Any], checkpoint: Path | None, out_dir: Path, *, components: SDComponents,
        shard: tuple[int, int] = (0, 1),
    ) -> Path:
        """Write the submission into ``out_dir``; ``checkpoint`` must be None (there is none)."""
        if checkpoint is not None:
            raise UsageError("the sd baseline takes no --checkpoint (it has no trained weights); leave it out")
        chosen = settings_from_mapping(SDPromptSettings, settings, NAME)
        config: PromptGenerateConfig = prompt_config(chosen)
        return generate_from_prompts(
            components,
            emotion_prompts(chosen.chosen_templates()),
            config,
            out_dir,
            method=METHOD,
            extra_metadata={"baseline": NAME, "templates": list(chosen.chosen_templates())},
            shard=shard,
        )


__all__ = ["PROMPT_TEMPLATES", "SDPromptSettings", "StableDiffusionBaseline", "emotion_prompts"]
