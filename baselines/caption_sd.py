"""Caption-finetuned Stable Diffusion: SD-1.5's U-Net fine-tuned on ``"<emotion>, <caption>"`` (supplement 2.1).

Each image of the derived subset gets a BLIP-2 caption (:mod:`baselines.captions`, written beside the index and
made on the first ``train`` if missing); the U-Net is then fine-tuned on the text ``"<emotion>, <caption>"``
(``text_template``) with the text encoder and VAE frozen, and images are generated from the emotion word alone
(``prompt`` template ``"{emotion}"``: the part of the training text that names the emotion).

The paper gives no hyper-parameters for this row; the defaults are diffusers' text-to-image fine-tuning example
(``examples/text_to_image/train_text_to_image.py``, its README's SD command): ``--resolution=512 --center_crop
--random_flip --train_batch_size=1 --gradient_accumulation_steps=4 --max_train_steps=15000 --learning_rate=1e-05
--max_grad_norm=1 --lr_scheduler=constant --lr_warmup_steps=0 --use_ema`` (EMA decay 0.9999, diffusers'
``EMAModel`` default) and the script's AdamW defaults (betas 0.9/0.999, weight decay 1e-2, epsilon 1e-8). The
training stream walks the index's ``train`` split in the protocol's emotion-balanced order
(:func:`emogen_bench.data.balanced_order`, a new seed each epoch) unless ``balance_emotions`` is false.

Checkpoint: ``config.json``, ``unet/`` (a diffusers U-Net folder, float32: 3.44 GB at SD-1.5 size; the EMA
weights when ``use_ema``), ``loss.jsonl``, and while training ``checkpoint-<step>/`` every ``checkpoint_every``
steps (weights, EMA and AdamW state, about 14 GB at SD-1.5 size; only the latest is kept).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from baselines.captions import BLIP2_MODEL, BLIP2_REVISION, CAPTIONS_FILE, CaptionConfig, caption_index, read_captions
from baselines.common import (
    generate_from_prompts,
    read_checkpoint_config,
    settings_from_mapping,
    write_checkpoint_config,
)
from baselines.dreambooth import (
    Example,
    GenerateSettings,
    check_finetune_numbers,
    check_sd_matches,
    finetune,
    finetune_config,
    is_finished,
    load_weights_into,
    make_accelerator,
    prepare_run,
    restored,
    split_rows,
    weights_digest,
)
from emogen_bench.data import IndexRow, balanced_order, load_index
from emogen_bench.distributed import World
from emogen_bench.errors import DataError, UsageError
from emogen_bench.task import EMOTION_NAMES
from reference.sd import SDComponents

NAME = "caption-sd"
METHOD = "SD fine-tuned on BLIP-2 captions (emogen-bench baseline)"
TEXT_TEMPLATE = "{emotion}, {caption}"
PROMPT_TEMPLATE = "{emotion}"


@dataclass(frozen=True)
class CaptionSDSettings:
    """Training settings; defaults are diffusers' text-to-image example (module docstring), captions by BLIP-2.

    ``captions``: the captions file (default ``<index>/captions.jsonl``); missing captions are made with
    ``captioner`` (a Hub id, a local folder or ``tiny-blip2``) at ``captioner_revision`` on ``captioner_device``.
    """

    seed: int = 0
    max_steps: int | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    show_progress: bool = True
    steps: int = 15_000
    learning_rate: float = 1e-5
    batch_size: int = 1
    gradient_accumulation: int = 4
    resolution: int = 512
    center_crop: bool = True
    random_flip: bool = True
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    use_ema: bool = True
    ema_decay: float = 0.9999
    text_template: str = TEXT_TEMPLATE
    split: str = "train"
    balance_emotions: bool = True
    captions: str | None = None
    captioner: str = BLIP2_MODEL
    captioner_revision: str | None = BLIP2_REVISION
    captioner_device: str = "cpu"
    caption_batch_size: int = 16
    allow_download: bool = False
    checkpoint_every: int | None = 1000
    cpu: bool = False

    def __post_init__(self) -> None:
        check_finetune_numbers(self, NAME)
        if "{emotion}" not in self.text_template or "{caption}" not in self.text_template:
            raise UsageError(
                f"caption-sd text_template={self.text_template!r} must contain {{emotion}} and {{caption}}"
            )
        if not 0 <= self.ema_decay < 1:
            raise UsageError(f"caption-sd ema_decay={self.ema_decay}: expected a number in [0, 1)")

    def caption_config(self) -> CaptionConfig:
        """How missing captions are made."""
        return CaptionConfig(
            model=self.captioner, revision=self.captioner_revision, batch_size=self.caption_batch_size,
            device=self.captioner_device, allow_download=self.allow_download, show_progress=self.show_progress,
        )  # fmt: skip


def caption_text(template: str, emotion: str, caption: str) -> str:
    """The training text of one image, e.g. ``"awe, a mountain covered in snow"``."""
    return template.format(emotion=emotion, caption=caption)


class CaptionStream:
    """Global sample number -> (row, text): epochs of the emotion-balanced (or shuffled) order of ``rows``."""

    def __init__(
        self, rows: Sequence[IndexRow], captions: Mapping[str, str], template: str, seed: int, balance: bool
    ) -> None:
        if not rows:
            raise DataError("no rows to fine-tune on: check the index and the split")
        self.rows, self.captions, self.template, self.seed, self.balance = list(rows), captions, template, seed, balance
        self._orders: dict[int, list[int]] = {}
        self._length = len(self.order(0))  # the same for every epoch: only the shuffle changes

    def order(self, epoch: int) -> list[int]:
        """Row positions of one epoch."""
        if epoch not in self._orders:
            if self.balance:
                order = balanced_order(self.rows, split=None, seed=self.seed + epoch)
            else:
                order = list(range(len(self.rows)))
                random.Random(f"caption-sd/{self.seed}/{epoch}").shuffle(order)
            self._orders = {epoch: order}
        return self._orders[epoch]

    def __call__(self, sample: int) -> Example:
        row = self.rows[self.order(sample // self._length)[sample % self._length]]
        return Example(row, caption_text(self.template, row.emotion, self.captions[row.id]))


def _captions_path(settings: CaptionSDSettings, index_dir: Path) -> Path:
    return Path(settings.captions) if settings.captions else Path(index_dir) / CAPTIONS_FILE


class CaptionSD:
    """The ``caption-sd`` baseline: one U-Net fine-tuned on captioned images, prompted with the emotion word."""

    name = NAME
    trains = True

    def train(
        self,
        settings: Mapping[str, Any],
        index_dir: Path,
        emoset_root: Path,
        out_dir: Path,
        *,
        components: SDComponents,
        resume: bool = False,
        captioner: Callable[[], Any] | None = None,
    ) -> Path:
        """Caption what is missing, then fine-tune the U-Net into ``out_dir`` (resumable from its checkpoints)."""
        chosen = settings_from_mapping(CaptionSDSettings, settings, NAME)
        out_dir, index_dir, emoset_root = Path(out_dir), Path(index_dir), Path(emoset_root)
        accelerator = make_accelerator(chosen.mixed_precision, chosen.cpu)
        prepare_run(out_dir, chosen, resume, NAME)  # every rank checks the folder before any rank writes to it
        accelerator.wait_for_everyone()
        rows = split_rows(load_index(index_dir), chosen.split)
        path = _captions_path(chosen, index_dir)
        world = World(accelerator.process_index, accelerator.num_processes, accelerator.local_process_index)
        caption_config = chosen.caption_config()
        if world.size > 1 and caption_config.device == "cuda":  # each rank captions on its own GPU
            caption_config = dataclasses.replace(caption_config, device=f"cuda:{world.local_rank}")
        caption_index(
            index_dir, emoset_root, path, config=caption_config, captioner=captioner, ids=[row.id for row in rows],
            world=world, barrier=accelerator.wait_for_everyone,
        )  # fmt: skip
        captions = {record.id: record.caption for record in read_captions(path).values()}
        missing = [row.id for row in rows if row.id not in captions]
        if missing:
            raise DataError(f"{path}: no caption for {len(missing)} image(s) ({', '.join(missing[:3])}); caption again")
        if accelerator.is_main_process:  # one writer; the others wait until the run folder is complete
            out_dir.mkdir(parents=True, exist_ok=True)
            write_checkpoint_config(
                out_dir, NAME, chosen, components, images=len(rows), captions=str(path),
                processes=accelerator.num_processes,
            )  # fmt: skip
        accelerator.wait_for_everyone()
        components.to(accelerator.device)
        stream = CaptionStream(rows, captions, chosen.text_template, chosen.seed, chosen.balance_emotions)
        config = finetune_config(chosen, chosen.seed, "caption-sd", chosen.ema_decay if chosen.use_ema else None)
        with restored(components, False):
            finetune(components, stream, config, out_dir, accelerator, emoset_root)
        return out_dir

    def generate(
        self, settings: Mapping[str, Any], checkpoint: Path | None, out_dir: Path, *, components: SDComponents,
        shard: tuple[int, int] = (0, 1),
    ) -> Path:
        """A submission from the fine-tuned U-Net, prompted with ``prompt`` (default ``"{emotion}"``)."""
        chosen = settings_from_mapping(GenerateSettings, settings, NAME)
        if checkpoint is None:
            raise UsageError("caption-sd generate needs the checkpoint folder that `train` wrote (--checkpoint)")
        checkpoint = Path(checkpoint)
        document = read_checkpoint_config(checkpoint, NAME)
        check_sd_matches(document, components, checkpoint)
        if not is_finished(checkpoint):
            raise UsageError(f"{checkpoint}: training is not finished (no unet/); run `train` again with --resume")
        template = chosen.prompt or PROMPT_TEMPLATE
        if "{emotion}" not in template:
            raise UsageError(f"caption-sd prompt={template!r} must contain {{emotion}}")
        prompts = {e: template.format(emotion=e) for e in EMOTION_NAMES}
        extra = {"checkpoint": {"baseline": NAME, "settings": document["settings"],
                                "unet": weights_digest(checkpoint / "unet")}}  # fmt: skip
        with restored(components, False):
            load_weights_into(components.unet, checkpoint / "unet")
            return generate_from_prompts(
                components, prompts, chosen.config(), Path(out_dir), method=METHOD, extra_metadata=extra, shard=shard
            )


__all__ = ["CaptionSD", "CaptionSDSettings", "CaptionStream", "PROMPT_TEMPLATE", "TEXT_TEMPLATE", "caption_text"]
