"""What each stage does: the synthetic data, EmoGen's inputs, and each row's train, generate, evaluate and entry.

:func:`prepare_stage` empties the folders of an attempt that starts afresh and says whether the attempt
resumes; :func:`execute_stage` then does the work.  The two are apart so that a stage run on several
processes (``tables run-stage --processes N``) is prepared once, before the processes start: every rank
then sees the same folders.  ``train``, ``generate`` and ``evaluate`` run on every rank of
``ctx.world`` (training data-parallel through accelerate, generation and feature extraction sharded);
the other stages run in one process.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emogen_bench.distributed import World, barrier
from emogen_bench.errors import UsageError
from emogen_bench.task import EMOTION_NAMES, SUBMISSION
from leaderboard.regenerate.plan import (
    EMOGEN,
    MULTI_PROCESS_STAGES,
    OFFICIAL,
    PLAN_OWNER,
    TINY_SD,
    Plan,
    PlanRow,
    resolve_path,
)
from leaderboard.regenerate.stages import Stage


@dataclass
class Context:
    """What every stage runner needs: the plan, the work folder, the upstream outputs, how to report."""

    plan: Plan
    workdir: Path
    show_progress: bool
    log: Callable[[str], None]
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Tiny extractors of a tiny plan, built once per run (every row is scored with the same models).
    extractors: dict[str, Any] | None = None
    #: The processes this stage runs on (``tables run-stage --processes N`` starts them with torchrun).
    world: World = field(default_factory=lambda: World(0, 1, 0))

    def path(self, relative: str) -> Path:
        return self.workdir / relative

    def output(self, owner: str, stage: str, key: str) -> Any:
        return self.upstream[f"{owner}/{stage}"][key]


@dataclass(frozen=True)
class StageOutcome:
    """What a runner returns: ``paths`` (relative to the work folder; all must exist for the stage to count as
    done) and ``values`` (anything else later stages read)."""

    paths: Mapping[str, str]
    values: Mapping[str, Any] = field(default_factory=dict)


def relative_to_workdir(workdir: Path, path: Path) -> str:
    return str(Path(path).resolve().relative_to(workdir.resolve()))


def _fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (whatever a crashed attempt left there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _sd_components(plan: Plan, *, training: bool) -> Any:
    """Fresh SD components for one stage (stages add tokens and train weights, so none are shared)."""
    import torch

    from reference.sd import load_sd_components, tiny_sd_components

    if plan.sd["model"] == TINY_SD:
        return tiny_sd_components(seed=plan.seed)
    cuda = torch.cuda.is_available()
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if training:  # on the CPU in fp32: the training loops move and cast them (accelerate, mixed precision)
        return load_sd_components(plan.sd["model"], plan.sd["revision"], dtype=torch.float32, device="cpu")
    dtype = dtypes.get(plan.sd["dtype"], torch.float16 if cuda else torch.float32)
    return load_sd_components(plan.sd["model"], plan.sd["revision"], dtype=dtype, device="cuda" if cuda else "cpu")


def _data_paths(ctx: Context) -> tuple[Path, Path]:
    """(EmoSet root, index folder) of the plan."""
    if ctx.plan.tiny:
        return Path(ctx.output(PLAN_OWNER, "data", "emoset")), Path(ctx.output(PLAN_OWNER, "data", "index"))
    return resolve_path(ctx.workdir, ctx.plan.emoset), resolve_path(ctx.workdir, ctx.plan.index)


def run_data_stage(ctx: Context, resume: bool) -> StageOutcome:
    """Tiny plans: the synthetic EmoSet, its index and smoke reference statistics (as ``emogen-bench demo``)."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.data import prepare_emoset
    from emogen_bench.demo import write_synthetic_emoset
    from emogen_bench.features import tiny_extractors
    from emogen_bench.reference_stats import build_reference_stats

    root = ctx.path("data")
    emoset = write_synthetic_emoset(root / "emoset", seed=ctx.plan.seed + 1)
    prepare_emoset(emoset, root / "index", show_progress=ctx.show_progress)
    inception = tiny_extractors(["inception"], protocol=ctx.plan.protocol)["inception"]
    build_reference_stats(
        root / "index", emoset, root / "reference.npz", extractor=inception, cache=FeatureCache(root=ctx.path("cache")),
        num_workers=0, device="cpu", show_progress=ctx.show_progress, protocol=ctx.plan.protocol,
    )  # fmt: skip
    return StageOutcome({"emoset": "data/emoset", "index": "data/index", "reference": "data/reference.npz"})


def run_emogen_inputs_stage(ctx: Context, resume: bool) -> StageOutcome:
    """EmoGen's encoder, emotion space and confidence table: trained at toy size (tiny) or named files/official."""
    if not ctx.plan.tiny:
        values = {}
        for key in ("encoder", "space", "confidence"):
            value = ctx.plan.emogen[key]
            path = resolve_path(ctx.workdir, value)
            if value != OFFICIAL and not path.is_file():
                raise UsageError(
                    f"{ctx.plan.path}: emogen.{key}: {path} does not exist; give 'official' or the "
                    f"file written by `emogen-bench reference {key if key != 'encoder' else 'stage1'}`"
                )
            values[key] = value if value == OFFICIAL else str(path.resolve())
        return StageOutcome({}, values)
    from emogen_bench.data import load_index
    from emogen_bench.features import tiny_extractors
    from reference.confidence import clip_embeddings
    from reference.encoder import Stage1Config, load_encoder, train_stage1
    from reference.steps import confidence_step, space_step

    prep = {"stage1_steps": 2, "stage1_batch": 8, "encoder_size": 64, "confidence_epochs": 5, **ctx.plan.emogen["prep"]}
    emoset, index = _data_paths(ctx)
    root = ctx.path("emogen-inputs")
    rows = load_index(index)
    stage1 = train_stage1(
        Stage1Config(
            epochs=1, steps_per_epoch=prep["stage1_steps"], batch_size=prep["stage1_batch"], trunk="tiny",
            pretrained=False, resize=prep["encoder_size"], crop=prep["encoder_size"], device="cpu", num_workers=0,
            eval_batch_size=16, seed=ctx.plan.seed, show_progress=ctx.show_progress,
        ),
        index, emoset, root / "stage1",
    )  # fmt: skip
    encoder = load_encoder(stage1.best_checkpoint)
    space_step(encoder, rows, emoset, root / "space", batch_size=16, source="tiny plan stage 1",
               show_progress=ctx.show_progress)  # fmt: skip
    clip = tiny_extractors(["clip"])["clip"]
    embeddings = clip_embeddings(rows, emoset, clip.vision_model, clip.pixel_settings, batch_size=16,
                                 show_progress=ctx.show_progress)  # fmt: skip
    confidence = confidence_step(embeddings, rows, root / "confidence", epochs=prep["confidence_epochs"],
                                 seed=ctx.plan.seed, show_progress=ctx.show_progress)  # fmt: skip
    paths = {
        "encoder": relative_to_workdir(ctx.workdir, stage1.best_checkpoint),
        "space": "emogen-inputs/space/space.safetensors",
        "confidence": relative_to_workdir(ctx.workdir, confidence["table"]),
    }
    return StageOutcome(paths)


def _row_settings(ctx: Context, row: PlanRow, stage: str) -> dict[str, Any]:
    """A row's settings for ``stage`` with the plan-wide ones filled in."""
    settings = dict(row.train if stage == "train" else row.generate)
    settings["seed"] = ctx.plan.seed
    settings["show_progress"] = ctx.show_progress
    if stage == "generate":
        settings["per_emotion"] = ctx.plan.per_emotion
    return settings


def run_train_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Train one row: a baseline's ``train``, or EmoGen's stage 2 on the plan's encoder, space and confidence."""
    out_dir = ctx.path(f"rows/{row.id}/train")
    if row.method == EMOGEN:
        checkpoint = _train_emogen(ctx, row, out_dir, resume)
    else:
        from baselines.common import get_baseline

        emoset, index = _data_paths(ctx)
        checkpoint = get_baseline(row.method).train(
            _row_settings(ctx, row, "train"), index, emoset, out_dir,
            components=_sd_components(ctx.plan, training=True), resume=resume,
        )  # fmt: skip
    return StageOutcome({"checkpoint": relative_to_workdir(ctx.workdir, checkpoint)})


def _train_emogen(ctx: Context, row: PlanRow, out_dir: Path, resume: bool) -> Path:
    from emogen_bench.data import load_index
    from reference.confidence import load_confidence_table, official_confidence_table
    from reference.steps import load_encoder_arg, load_space_arg
    from reference.train import Stage2Config, train_stage2
    from reference.vocabulary import vocabulary_from_rows

    inputs = ctx.upstream[f"{PLAN_OWNER}/emogen-inputs"]
    settings = _row_settings(ctx, row, "train")
    config = Stage2Config.from_dict({**settings, "cpu": ctx.plan.tiny, "resume": resume})
    space, space_source = load_space_arg(inputs["space"])
    table = (official_confidence_table() if inputs["confidence"] == OFFICIAL
             else load_confidence_table(inputs["confidence"]))  # fmt: skip
    encoder = load_encoder_arg(inputs["encoder"]) if config.mapper_input == "encoder" else None
    emoset, index = _data_paths(ctx)
    rows = load_index(index)
    result = train_stage2(
        config, _sd_components(ctx.plan, training=True), space, table, vocabulary_from_rows(rows, config.split), rows,
        emoset, out_dir, encoder=encoder, space_source=space_source,
    )  # fmt: skip
    return result.checkpoint


def run_generate_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Generate one row's submission; a resumed stage keeps the complete images its earlier attempt wrote."""
    out_dir = ctx.path(f"rows/{row.id}/submission")
    shard = (ctx.world.rank, ctx.world.size)  # every rank renders its share of the batches into the one folder
    checkpoint = ctx.upstream.get(f"{row.id}/train", {}).get("checkpoint")
    settings = _row_settings(ctx, row, "generate")
    if row.method == EMOGEN:
        import torch

        from reference.generate import METHOD, GenerateConfig, generate_submission
        from reference.steps import load_space_arg
        from reference.train import load_checkpoint

        mapper, _ = load_checkpoint(checkpoint)
        space, _ = load_space_arg(ctx.output(PLAN_OWNER, "emogen-inputs", "space"))
        components = _sd_components(ctx.plan, training=False)
        mapper = mapper.to(next(components.unet.parameters()).device)
        config = GenerateConfig(**settings, method=METHOD)
        with torch.no_grad():
            generate_submission(config, components, mapper, space, out_dir, shard=shard)
    else:
        from baselines.common import get_baseline

        get_baseline(row.method).generate(
            settings, Path(checkpoint) if checkpoint else None, out_dir,
            components=_sd_components(ctx.plan, training=False), shard=shard,
        )  # fmt: skip
    return StageOutcome({"submission": relative_to_workdir(ctx.workdir, out_dir)})


def jpeg_copy(source: Path, dest: Path, quality: int) -> Path:
    """A copy of the submission ``source`` with every image re-encoded as ``<stem>.jpg`` at ``quality``.

    The released EmoGen inference saved ``.jpg`` files with Pillow's defaults, and the released metric
    scripts read only ``*jpg`` files; under ``emogen-paper-code`` a PNG submission gets no LPIPS or Sem-D.
    Resumable: complete JPEG files already in ``dest`` are kept. ``submission.json`` names the new files
    and says what was done.
    """
    from PIL import Image

    from emogen_bench.fileio import atomic_writer
    from emogen_bench.submission import read_metadata, write_metadata

    metadata = read_metadata(source / SUBMISSION.metadata_file)
    renamed: dict[str, str] = {}
    for emotion in EMOTION_NAMES:
        (dest / emotion).mkdir(parents=True, exist_ok=True)
        for image in sorted((source / emotion).iterdir()):
            if image.name.startswith(".") or not image.is_file():
                continue
            relative = f"{emotion}/{image.stem}.jpg"
            renamed[f"{emotion}/{image.name}"] = relative
            target = dest / relative
            if target.exists() and _complete_jpeg(target):
                continue
            with Image.open(image) as handle, atomic_writer(target, overwrite=True) as out:
                handle.convert("RGB").save(out, format="JPEG", quality=quality)
    seeds = {renamed.get(path, path): seed for path, seed in (metadata.seeds or {}).items()}
    note = f"JPEG copy (quality {quality}) of {source.name}, as the released EmoGen inference saved its images"
    notes = f"{metadata.notes}; {note}" if metadata.notes else note
    write_metadata(dest, dataclasses.replace(metadata, seeds=seeds or None, notes=notes), overwrite=True)
    return dest


def _complete_jpeg(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.format == "JPEG"
    except (OSError, ValueError):
        return False


def run_evaluate_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome | None:
    """Score one row's submission with ``emogen_bench.evaluate`` (tiny extractors and smoke statistics if tiny).

    On several processes, every rank extracts its share of the features into the work folder's cache and
    rank 0 computes the metrics (``None`` on the other ranks), as ``torchrun ... evaluate`` does.
    """
    from emogen_bench.cache import FeatureCache
    from emogen_bench.config import EvalConfig
    from emogen_bench.evaluate import evaluate, fill_cache_for_rank
    from emogen_bench.features import tiny_extractors
    from emogen_bench.reference_stats import load_reference_stats

    plan = ctx.plan
    row_dir = ctx.path(f"rows/{row.id}")
    submission = Path(ctx.output(row.id, "generate", "submission"))
    if plan.evaluate.jpeg_quality:
        jpeg_dir = row_dir / "submission-jpg"
        if ctx.world.is_main:
            jpeg_copy(submission, jpeg_dir, plan.evaluate.jpeg_quality)
        barrier(ctx.world)
        submission = jpeg_dir
    official = plan.per_emotion == SUBMISSION.images_per_emotion
    config = EvalConfig(
        per_emotion=None if official else plan.per_emotion, protocol=plan.protocol, seed=plan.seed,
        pairs=plan.evaluate.pairs, device="cpu" if plan.tiny else ctx.world.device(plan.evaluate.device),
        batch_size=plan.evaluate.batch_size, num_workers=0 if plan.tiny else plan.evaluate.num_workers,
        show_progress=ctx.show_progress,
    )  # fmt: skip
    if plan.tiny:
        reference_path = Path(ctx.output(PLAN_OWNER, "data", "reference"))
        if ctx.extractors is None:
            ctx.extractors = tiny_extractors(protocol=plan.protocol)
        extractors = ctx.extractors
    else:
        reference_path = resolve_path(ctx.workdir, plan.reference)
        extractors = None
    cache = FeatureCache(root=ctx.path("cache"))
    if ctx.world.size > 1:  # every rank fills the shared cache for its slice; rank 0 then finds every feature there
        fill_cache_for_rank(submission, config, ctx.world, extractors=extractors, cache=cache)
        barrier(ctx.world)
        if not ctx.world.is_main:
            return None
    result = evaluate(submission, config, extractors=extractors, reference=load_reference_stats(reference_path),
                      cache=cache)  # fmt: skip
    path = result.write(row_dir / "results.json", overwrite=True)
    return StageOutcome({"results": relative_to_workdir(ctx.workdir, path)}, {"smoke": result.smoke})


def run_entry_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Turn one row's results into an entry under ``<workdir>/entries`` (never ``leaderboard/entries``)."""
    from emogen_bench.results import read_results
    from leaderboard.entries import entry_from_results, smoke_entry_from_results, store_entry

    results_path = Path(ctx.output(row.id, "evaluate", "results"))
    results = read_results(results_path)
    notes = f"regenerated by `emogen-bench tables regenerate` (plan {ctx.plan.name}, row {row.id})"
    if results.get("smoke"):
        entry = smoke_entry_from_results(results, method=f"{row.label} [SMOKE]", slug=row.id, notes=notes,
                                         source=results_path)  # fmt: skip
    else:
        entry = entry_from_results(results, method=f"{row.label} (regenerated)", slug=row.id, notes=notes,
                                   source=results_path)  # fmt: skip
    outcome = store_entry(entry, ctx.path("entries"), replace=True)
    return StageOutcome({"entry": relative_to_workdir(ctx.workdir, outcome.path)})


def prepare_stage(ctx: Context, stage: Stage, resume: bool) -> bool:
    """Empty what an attempt starting afresh must not find; returns whether this attempt resumes.

    ``data`` and ``emogen-inputs`` always start from an empty folder.  Training resumes only when its
    earlier attempt left something to resume from (an EmoGen checkpoint, a baseline's files);
    generation keeps the complete images of the same run, evaluation the complete JPEG copies.
    """
    if stage.owner == PLAN_OWNER:
        _fresh_dir(ctx.path("data" if stage.name == "data" else "emogen-inputs"))
        return False
    row = ctx.plan.row(stage.owner)
    if stage.name == "train":
        out_dir = ctx.path(f"rows/{row.id}/train")
        if row.method == EMOGEN:
            from reference.train import checkpoint_dirs

            resume = resume and out_dir.is_dir() and bool(checkpoint_dirs(out_dir))
        else:
            resume = resume and out_dir.is_dir() and any(out_dir.iterdir())
        if not resume:
            _fresh_dir(out_dir)
        return resume
    folder = {"generate": f"rows/{row.id}/submission", "evaluate": f"rows/{row.id}/submission-jpg"}.get(stage.name)
    if folder is not None and not resume and ctx.path(folder).exists():
        shutil.rmtree(ctx.path(folder))
    return resume


def execute_stage(ctx: Context, stage: Stage, resume: bool) -> StageOutcome | None:
    """Dispatch to the stage's runner (looked up at call time, so tests can replace one).

    ``None`` on a rank other than 0 of a multi-process attempt; one-process stages do nothing there.
    """
    if ctx.world.size > 1 and not ctx.world.is_main and stage.name not in MULTI_PROCESS_STAGES:
        return None
    if stage.owner == PLAN_OWNER:
        runner = {"data": run_data_stage, "emogen-inputs": run_emogen_inputs_stage}[stage.name]
        return runner(ctx, resume)
    row = ctx.plan.row(stage.owner)
    runners = {"train": run_train_stage, "generate": run_generate_stage, "evaluate": run_evaluate_stage,
               "entry": run_entry_stage}  # fmt: skip
    return runners[stage.name](ctx, row, resume)
