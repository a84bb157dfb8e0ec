"""``emogen-bench reference smoke``: the whole reference method at toy size, on synthetic data, on a CPU.

Every step runs through the same code as the full-size run, only with tiny models built in code:
a synthetic EmoSet (``emogen_bench.demo.write_synthetic_emoset``) prepared into an index, stage 1 with
a tiny CNN trunk for a few steps, the emotion space and its report, the emotion-confidence table
from the tiny CLIP of ``emogen_bench.features.tiny_extractors``, stage 2 for a few steps on tiny
Stable Diffusion components, and finally two images per emotion written into ``out`` as a benchmark
submission and validated with ``per_emotion=2``.

The images are 256x256 because a submission's shorter side must be at least 256 pixels: the tiny VAE
decodes 32x32 latents to 256x256 directly (nothing is upscaled), with 4 UniPC steps instead of 50.
They show nothing: the run proves that the pipeline works, and is labelled a smoke run everywhere.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.fileio import write_json_atomic
from emogen_bench.submission.validate import ValidationReport

SMOKE_LABEL = "smoke run: tiny random models on synthetic images (the images mean nothing)"
SMOKE_PER_EMOTION = 2
SMOKE_METHOD = "EmoGen reference smoke run (tiny models, synthetic data)"


@dataclass(frozen=True)
class SmokeSettings:
    """Sizes of the smoke run: small enough for a 2-core CPU, large enough to exercise every code path."""

    stage1_steps: int = 2
    stage1_batch: int = 8
    encoder_size: int = 64
    stage2_steps: int = 3
    stage2_batch: int = 2
    stage2_resolution: int = 64
    mapper_hidden: int = 64
    image_size: int = 256
    sampling_steps: int = 4
    batch_size: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SmokeResult:
    """Where the smoke run put things and what validation said."""

    out: Path
    workdir: Path
    kept: bool
    validation: ValidationReport
    outputs: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.validation.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "smoke": True,
            "label": SMOKE_LABEL,
            "submission": str(self.out),
            "workdir": str(self.workdir) if self.kept else None,
            "outputs": dict(self.outputs) if self.kept else {},
            "numbers": dict(self.numbers),
            "validation": {"valid": self.valid, "run": self.validation.run_label,
                           "problems": [p.to_dict() for p in self.validation.problems]},
        }

    def lines(self) -> list[str]:
        """What the command prints: the label, where everything went, the validation verdict."""
        verdict = "VALID" if self.valid else "INVALID"
        lines = [f"emogen-bench reference smoke: {SMOKE_LABEL}", f"submission: {self.out}"]
        if self.kept:
            lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        else:
            lines.append("intermediate files: written to a temporary folder, removed (keep them with --workdir DIR)")
        lines += [f"  {name}: {value}" for name, value in self.numbers.items()]
        lines.append(f"validation: {verdict} ({self.validation.run_label})")
        lines += [f"  {p.severity}: {p.path}: {p.message}" for p in self.validation.problems[:20]]
        lines.append(f"check it again with: emogen-bench validate {self.out} --per-emotion {SMOKE_PER_EMOTION}")
        return lines


def _require_new_or_empty(path: Path, option: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(
            f"{option} {path} is not empty (an earlier smoke run?); the smoke run writes everything afresh and never "
            "replaces files: give a new or empty folder, or delete this one (nothing was written)"
        )


def _run(out: Path, work: Path, settings: SmokeSettings, show_progress: bool) -> SmokeResult:
    import torch

    from emogen_bench.data import load_index, prepare_emoset
    from emogen_bench.demo import write_synthetic_emoset
    from emogen_bench.features import tiny_extractors
    from emogen_bench.submission import validate_submission
    from reference.confidence import clip_embeddings, load_confidence_table
    from reference.encoder import Stage1Config, load_encoder, train_stage1
    from reference.generate import GenerateConfig, generate_submission_summary
    from reference.sd import tiny_sd_components
    from reference.steps import confidence_step, space_step
    from reference.train import Stage2Config, load_checkpoint, train_stage2
    from reference.vocabulary import vocabulary_from_rows

    emoset = write_synthetic_emoset(work / "emoset", seed=settings.seed + 1)
    prepare_emoset(emoset, work / "index", show_progress=show_progress)
    rows = load_index(work / "index")

    stage1 = train_stage1(
        Stage1Config(
            epochs=1, steps_per_epoch=settings.stage1_steps, batch_size=settings.stage1_batch, trunk="tiny",
            pretrained=False, resize=settings.encoder_size, crop=settings.encoder_size, device="cpu", num_workers=0,
            eval_batch_size=16, seed=settings.seed, show_progress=show_progress,
        ),
        work / "index", emoset, work / "stage1",
    )  # fmt: skip
    encoder = load_encoder(stage1.best_checkpoint)

    space, report = space_step(encoder, rows, emoset, work / "space", batch_size=16, source="smoke stage 1",
                               show_progress=show_progress)

    clip = tiny_extractors(["clip"])["clip"]
    embeddings = clip_embeddings(rows, emoset, clip.vision_model, clip.pixel_settings, batch_size=16,
                                 show_progress=show_progress)
    confidence = confidence_step(embeddings, rows, work / "confidence", epochs=5, seed=settings.seed,
                                 show_progress=show_progress)

    components = tiny_sd_components(seed=settings.seed)
    stage2 = train_stage2(
        Stage2Config(
            max_steps=settings.stage2_steps, batch_size=settings.stage2_batch, resolution=settings.stage2_resolution,
            mapper_hidden=settings.mapper_hidden, cpu=True, checkpoint_every=settings.stage2_steps,
            seed=settings.seed, show_progress=show_progress,
        ),
        components, space, load_confidence_table(confidence["table"]), vocabulary_from_rows(rows), rows, emoset,
        work / "stage2", encoder=encoder,
        space_source={"path": str((work / "space" / "space.safetensors").resolve()), "source": "smoke"},
    )  # fmt: skip
    mapper, _ = load_checkpoint(stage2.checkpoint)

    config = GenerateConfig(
        per_emotion=SMOKE_PER_EMOTION, seed=settings.seed, steps=settings.sampling_steps, width=settings.image_size,
        height=settings.image_size, batch_size=settings.batch_size, method=SMOKE_METHOD, show_progress=show_progress,
    )  # fmt: skip
    with torch.no_grad():
        generate_submission_summary(config, components, mapper, space, out)
    validation = validate_submission(out, per_emotion=SMOKE_PER_EMOTION, show_progress=show_progress)
    outputs = {
        "synthetic EmoSet": str(emoset),
        "index": str(work / "index"),
        "stage 1 encoder": str(stage1.best_checkpoint),
        "emotion space": str(work / "space" / "space.safetensors"),
        "space report": str(work / "space" / "space_report.txt"),
        "confidence table": str(confidence["table"]),
        "stage 2 checkpoint": str(stage2.checkpoint),
        "stage 2 loss log": str(stage2.loss_log),
    }
    numbers = {
        "stage 1 test accuracy": stage1.test_accuracy,
        "space nearest-mean accuracy": report["separation"]["nearest_mean_accuracy"],
        "CLIP head accuracy": confidence["head_accuracy"],
        "stage 2 last loss": stage2.last_loss,
    }
    return SmokeResult(out, work, False, validation, outputs, numbers)


def run_smoke(
    out: str | Path,
    *,
    workdir: str | Path | None = None,
    settings: SmokeSettings | None = None,
    show_progress: bool = True,
) -> SmokeResult:
    """Run the tiny end-to-end pipeline; the submission goes to ``out`` (new or empty), validated.

    The intermediate files go to ``workdir`` (new or empty; kept, with ``smoke.json`` describing the
    run) or to a temporary folder that is removed afterwards. A second run into the same ``out`` is
    refused before anything is computed: nothing is ever overwritten.
    """
    out = Path(out)
    settings = settings or SmokeSettings()
    _require_new_or_empty(out, "--out")
    if workdir is None:
        scratch = Path(tempfile.mkdtemp(prefix="emogen-reference-smoke-"))
        try:
            return _run(out, scratch, settings, show_progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    work = Path(workdir)
    _require_new_or_empty(work, "--workdir")
    if work.resolve().is_relative_to(out.resolve()):
        raise UsageError("--workdir must not be --out or inside it: a submission folder holds only its images")
    work.mkdir(parents=True, exist_ok=True)
    result = _run(out, work, settings, show_progress)
    kept = SmokeResult(result.out, work, True, result.validation, result.outputs, result.numbers)
    write_json_atomic(work / "smoke.json", kept.to_dict(), overwrite=False)
    return kept
