"""``emogen-bench reference <step>``: the reference EmoGen, step by step, as thin commands over the Python API.

Registered through the ``emogen_bench.commands`` entry point (``reference = "reference.cli:register"``),
so ``emogen_bench`` never imports this package.  Steps, in order (docs/reference.md describes each):
``stage1`` (emotion encoder), ``space`` (emotion space and its report), ``confidence`` (CLIP emotion
head and attribute confidence table), ``train`` (stage 2: the mapping network), ``generate`` (a
benchmark submission), the applications ``transfer``, ``fusion`` and ``decompose``, and ``smoke``
(everything at toy size on synthetic data, in about a minute on a CPU).  Heavy libraries are imported
inside the handlers, and the steps' options (their defaults come from torch-importing modules) are added only
when ``reference`` is used, so ``emogen-bench --help`` stays fast.  The defaults come from the config
dataclasses (``Stage1Config``, ``Stage2Config``, ``GenerateConfig``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from emogen_bench.cli import defer_arguments
from emogen_bench.distributed import barrier, parse_shard, process_group, world_from_env
from emogen_bench.errors import ExitCode, UsageError
from reference.steps import (
    OFFICIAL,
    SPACE_FILE,
    SPACE_REPORT_JSON,
    SPACE_REPORT_TXT,
    TINY_MODEL_ID,
    confidence_step,
    load_encoder_arg,
    load_space_arg,
    space_step,
)
from reference.vocabulary import vocabulary_from_rows


def _defaults(cls: type) -> dict[str, Any]:
    """Field defaults of a config dataclass (the CLI's defaults come from there, written once)."""
    return {f.name: f.default for f in fields(cls)}


# ---- loading what a step needs (the steps' own loaders are in reference/steps.py) ------------------------------


def _dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def load_components_for(args: argparse.Namespace, checkpoint: dict[str, Any] | None, *, projection: bool) -> Any:
    """SD components named by ``--sd-model``/``--sd-revision`` (default: those the checkpoint was trained with)."""
    from emogen_bench.pipeline import resolve_device
    from reference.sd import (
        CLIP_PROJECTION_ARTIFACT,
        DEFAULT_SD_MODEL,
        DEFAULT_SD_REVISION,
        load_sd_components,
        tiny_sd_components,
    )

    recorded = (checkpoint or {}).get("sd", {})
    model = args.sd_model or recorded.get("model_id") or DEFAULT_SD_MODEL
    if args.sd_revision is not None:
        revision = args.sd_revision
    elif model == recorded.get("model_id"):
        revision = recorded.get("revision")  # the weights the checkpoint was trained with
    else:
        revision = DEFAULT_SD_REVISION if model == DEFAULT_SD_MODEL else None  # never another model's revision
    device = resolve_device(args.device)
    dtype = _dtype(args.dtype, device)
    if model == TINY_MODEL_ID:
        return tiny_sd_components().to(device=device, dtype=dtype)
    source = (args.clip_projection or CLIP_PROJECTION_ARTIFACT) if projection else None
    return load_sd_components(
        model, revision, dtype=dtype, device=device, allow_download=args.allow_download,
        clip_text_projection_from=source,
    )  # fmt: skip


# ---- the parsers ----------------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")


def _data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=Path, required=True, metavar="DIR", help="the --out folder of `data prepare`")
    parser.add_argument("--emoset-root", type=Path, required=True, metavar="DIR", help="the EmoSet folder it came from")


def _sd(parser: argparse.ArgumentParser, *, projection: bool) -> None:
    parser.add_argument("--sd-model", metavar="ID|DIR", default=None,
                        help="Stable Diffusion: a Hub id or a local diffusers folder (default: the checkpoint's, "
                             "else the registry's sd-1.5 pin)")
    parser.add_argument("--sd-revision", metavar="REV", default=None, help="Hub revision (default: the pinned one)")
    parser.add_argument("--allow-download", action="store_true",
                        help="allow downloading missing weights from the Hugging Face Hub (default: local files only)")
    if projection:
        parser.add_argument("--clip-projection", metavar="ID|FILE", default=None,
                            help="CLIP's text projection: a weights artifact id (default clip-vit-l14) or a "
                                 "model.safetensors")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (default)")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="weights dtype (default auto: fp16 on CUDA, fp32 on CPU)")


def _sampling(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    parser.add_argument("--seed", type=int, default=defaults["seed"], help=f"base seed (default {defaults['seed']})")
    parser.add_argument("--steps", type=int, default=defaults["steps"], help=f"UniPC steps ({defaults['steps']})")
    parser.add_argument("--guidance", type=float, default=defaults["guidance"],
                        help=f"classifier-free guidance against the empty prompt (default {defaults['guidance']})")
    parser.add_argument("--width", type=int, default=defaults["width"], help=f"default {defaults['width']}")
    parser.add_argument("--height", type=int, default=defaults["height"], help=f"default {defaults['height']}")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                        help=f"images per U-Net batch (default {defaults['batch_size']})")


def _checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                        help="a stage-2 checkpoint folder, or the run folder (its latest checkpoint)")
    parser.add_argument("--space", metavar="FILE|official", default=None,
                        help="emotion space to sample from (default: the one the checkpoint records)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reference`` to the ``emogen-bench`` parser; its steps are added when it is used (:func:`_add_steps`)."""
    parser = subparsers.add_parser(
        "reference",
        help="the reference EmoGen: train it on EmoSet (GPU) and generate a benchmark submission",
        description="EmoGen (CVPR 2024) step by step; docs/reference.md explains each step and the full-size run.",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    defer_arguments(parser, _add_steps)


def _add_steps(parser: argparse.ArgumentParser) -> None:
    """The steps and their options.  Their defaults come from the config dataclasses, whose modules import torch:
    deferred (:func:`emogen_bench.cli.defer_arguments`), so ``emogen-bench --help`` does not import it."""
    from reference.encoder import Stage1Config
    from reference.generate import DecompositionConfig, GenerateConfig
    from reference.train import Stage2Config

    steps = parser.add_subparsers(dest="reference_step", metavar="STEP")

    s1 = _defaults(Stage1Config)
    stage1 = steps.add_parser("stage1", help="train the emotion encoder (ResNet-50 classifier) on EmoSet")
    _data(stage1)
    stage1.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoints, log.jsonl, result.json")
    stage1.add_argument("--epochs", type=int, default=s1["epochs"], help=f"default {s1['epochs']}")
    stage1.add_argument("--batch-size", type=int, default=s1["batch_size"], help=f"default {s1['batch_size']}")
    stage1.add_argument("--lr", type=float, default=s1["lr"], help=f"default {s1['lr']}")
    stage1.add_argument("--optimizer", choices=("sgd", "adamw"), default=s1["optimizer"],
                        help=f"default {s1['optimizer']}")
    stage1.add_argument("--trunk", choices=("resnet50", "tiny"), default=s1["trunk"], help="tiny: for tests only")
    stage1.add_argument("--no-pretrained", action="store_true", help="start the ResNet-50 from random weights")
    stage1.add_argument("--steps-per-epoch", type=int, default=None, help="cap each epoch (smoke runs)")
    stage1.add_argument("--seed", type=int, default=s1["seed"])
    stage1.add_argument("--device", default=s1["device"])
    stage1.add_argument("--num-workers", type=int, default=s1["num_workers"])
    stage1.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    stage1.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=s1["mixed_precision"],
                        help="autocast the forward (accelerate); under accelerate launch / torchrun each process "
                             "trains on its share of every epoch (effective batch = batch size x processes)")
    _common(stage1)
    stage1.set_defaults(handler=run_stage1)

    space = steps.add_parser("space", help="fit the emotion space (per-emotion Gaussians) and report how well it fits")
    _data(space)
    space.add_argument("--encoder", required=True, metavar="FILE|official", help="stage-1 best.pt, or 'official'")
    space.add_argument("--statistics", metavar="FILE|official", default=None,
                       help="report on these statistics instead of fitting new ones (e.g. 'official')")
    space.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                       help="rows to fit on (default all: the paper uses all of EmoSet)")
    space.add_argument("--out", type=Path, required=True, metavar="DIR")
    space.add_argument("--batch-size", type=int, default=64)
    space.add_argument("--num-workers", type=int, default=4)
    space.add_argument("--device", default="auto")
    _common(space)
    space.set_defaults(handler=run_space)

    confidence = steps.add_parser("confidence", help="CLIP emotion head and the per-attribute emotion-confidence table")
    _data(confidence)
    confidence.add_argument("--out", type=Path, required=True, metavar="DIR")
    confidence.add_argument("--head", metavar="FILE|official", default=None,
                            help="use this head instead of training one ('official': the released head)")
    confidence.add_argument("--threshold", type=float, default=_defaults(Stage2Config)["threshold"],
                            help="report the attributes kept at this confidence threshold")
    confidence.add_argument("--epochs", type=int, default=30)
    confidence.add_argument("--lr", type=float, default=1e-3)
    confidence.add_argument("--seed", type=int, default=0)
    confidence.add_argument("--batch-size", type=int, default=64)
    confidence.add_argument("--num-workers", type=int, default=4)
    confidence.add_argument("--device", default="auto")
    _common(confidence)
    confidence.set_defaults(handler=run_confidence)

    s2 = _defaults(Stage2Config)
    train = steps.add_parser("train", help="stage 2: train the mapping network against frozen Stable Diffusion")
    _data(train)
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoint-<step>/ folders, loss.jsonl")
    train.add_argument("--space", required=True, metavar="FILE|official", help="emotion space (space.safetensors)")
    train.add_argument("--confidence", required=True, metavar="FILE|official", help="confidence.json, or 'official'")
    train.add_argument("--encoder", metavar="FILE|official", default=None,
                       help="stage-1 encoder (needed with --mapper-input encoder, the default)")
    _sd(train, projection=True)
    for name in ("max_steps", "batch_size", "resolution", "checkpoint_every", "keep_checkpoints", "seed",
                 "mapper_hidden", "mapper_depth", "num_workers"):
        train.add_argument("--" + name.replace("_", "-"), type=int, default=s2[name], help=f"default {s2[name]}")
    for name in ("learning_rate", "threshold", "no_confidence_weight", "mapper_dropout", "attribute_logit_scale"):
        train.add_argument("--" + name.replace("_", "-"), type=float, default=s2[name], help=f"default {s2[name]}")
    choices = {"mixed_precision": ("no", "fp16", "bf16"), "mapper_input": ("encoder", "space"),
               "pooled_mode": ("eos", "released"), "loss_mode": ("paper", "released"),
               "ablation": ("full", "ldm-only", "no-attr-loss", "no-confidence")}
    for name, options in choices.items():
        train.add_argument("--" + name.replace("_", "-"), choices=options, default=s2[name], help=f"default {s2[name]}")
    train.add_argument("--mapper-layernorm", action="store_true")
    train.add_argument("--no-random-flip", action="store_true")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    _common(train)
    train.set_defaults(handler=run_train)

    g = _defaults(GenerateConfig)
    generate = steps.add_parser("generate", help="write a benchmark submission (images + submission.json)")
    _checkpoint(generate)
    generate.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="the submission folder: new, empty, or an earlier run of this command to resume")
    generate.add_argument("--per-emotion", type=int, default=None,
                          help=f"images per emotion (default {g['per_emotion']}: the official run)")
    generate.add_argument("--shard", metavar="K/N", default=None,
                          help="render only batch K, K+N, ... (N processes, one per GPU, filling one folder)")
    _sampling(generate, g)
    _sd(generate, projection=False)
    _common(generate)
    generate.set_defaults(handler=run_generate)

    for name, helptext, handler in (
        ("transfer", "emotion transfer: the emotion token with neutral objects (bag, cup, room, street)", run_transfer),
        ("fusion", "emotion fusion: two emotion embeddings in one prompt, all 28 pairs", run_fusion),
    ):
        app = steps.add_parser(name, help=helptext)
        _checkpoint(app)
        app.add_argument("--out", type=Path, required=True, metavar="DIR")
        if name == "transfer":
            app.add_argument("--objects", nargs="+", default=None, metavar="WORD", help="default: bag cup room street")
        _sampling(app, g)
        _sd(app, projection=False)
        _common(app)
        app.set_defaults(handler=handler)

    d = _defaults(DecompositionConfig)
    decompose = steps.add_parser("decompose", help="emotion decomposition: the attributes closest to each emotion")
    _checkpoint(decompose)
    decompose.add_argument("--index", type=Path, required=True, metavar="DIR",
                           help="prepared index: its train attributes are the vocabulary")
    decompose.add_argument("--out", type=Path, required=True, metavar="DIR")
    decompose.add_argument("--samples", type=int, default=d["samples"], help=f"draws per emotion ({d['samples']})")
    decompose.add_argument("--top-k", type=int, default=d["top_k"], help=f"default {d['top_k']}")
    decompose.add_argument("--seed", type=int, default=d["seed"])
    _sd(decompose, projection=True)
    _common(decompose)
    decompose.set_defaults(handler=run_decompose)

    smoke = steps.add_parser(
        "smoke",
        help="the whole method at toy size on synthetic data (CPU, about a minute): an install check",
        description="Synthetic EmoSet, stage 1 with a tiny trunk, emotion space, confidence on tiny CLIP embeddings, "
        "stage 2 for a few steps on tiny Stable Diffusion, then 2 images per emotion into --out, validated. "
        "The images mean nothing; it proves the pipeline runs.",
    )
    smoke.add_argument("--out", type=Path, required=True, metavar="DIR", help="the submission folder (new or empty)")
    smoke.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                       help="keep the intermediate files here (new or empty; default: a temporary folder, removed)")
    _common(smoke)
    smoke.set_defaults(handler=run_smoke_command)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return int(ExitCode.USAGE)


def _say(args: argparse.Namespace, document: dict[str, Any], lines: Sequence[str]) -> None:
    if args.json:
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print("\n".join(lines))


# ---- handlers -------------------------------------------------------------------------------------------------


def run_stage1(args: argparse.Namespace) -> int:
    from reference.encoder import Stage1Config, train_stage1

    config = Stage1Config(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, trunk=args.trunk,
        pretrained=not args.no_pretrained, steps_per_epoch=args.steps_per_epoch, seed=args.seed, device=args.device,
        num_workers=args.num_workers, show_progress=not args.quiet, mixed_precision=args.mixed_precision,
    )  # fmt: skip
    result = train_stage1(config, args.index, args.emoset_root, args.out, resume=args.resume)
    _say(args, result.to_dict(), [
        f"stage 1 done: best epoch {result.best_epoch}, val accuracy {result.best_val_accuracy}, "
        f"test accuracy {result.test_accuracy}",
        f"encoder: {result.best_checkpoint}",
    ])  # fmt: skip
    return int(ExitCode.OK)


def _rows(index: Path, split: str | None) -> list[Any]:
    from emogen_bench.data import load_index

    rows = load_index(index)
    return rows if split in (None, "all") else [row for row in rows if row.split == split]


def run_space(args: argparse.Namespace) -> int:
    from emogen_bench.pipeline import resolve_device
    from reference.space import format_space_report

    statistics = load_space_arg(args.statistics)[0] if args.statistics else None
    encoder = load_encoder_arg(args.encoder)
    space, report = space_step(
        encoder, _rows(args.index, args.split), args.emoset_root, args.out, statistics=statistics,
        batch_size=args.batch_size, num_workers=args.num_workers, device=str(resolve_device(args.device)),
        source=f"encoder {args.encoder}", show_progress=not args.quiet,
    )  # fmt: skip
    lines = [format_space_report(report)]
    if statistics is None:
        lines.append(f"emotion space: {args.out / SPACE_FILE}")
    lines.append(f"report: {args.out / SPACE_REPORT_TXT} and {args.out / SPACE_REPORT_JSON}")
    _say(args, report, lines)
    return int(ExitCode.OK)


def run_confidence(args: argparse.Namespace) -> int:
    from emogen_bench.pipeline import resolve_device
    from reference.confidence import clip_embeddings, load_clip, load_clip_head, load_official_head

    rows = _rows(args.index, "all")
    device = resolve_device(args.device)
    head = None
    if args.head:
        head = load_official_head() if args.head == OFFICIAL else load_clip_head(args.head)
    model, processor = load_clip()
    embeddings = clip_embeddings(rows, args.emoset_root, model.to(device), processor, batch_size=args.batch_size,
                                 num_workers=args.num_workers, device=device, show_progress=not args.quiet)
    summary = confidence_step(embeddings, rows, args.out, head=head, threshold=args.threshold, epochs=args.epochs,
                              lr=args.lr, seed=args.seed, show_progress=not args.quiet)
    _say(args, summary, [
        f"CLIP emotion head accuracy on {summary['accuracy_split']}: {summary['head_accuracy']:.4f} (paper: 83%)",
        f"attributes: {summary['attributes']}; kept at threshold {args.threshold}: {summary['kept_per_emotion']}",
        f"head: {summary['head']}", f"confidence table: {summary['table']}",
    ])  # fmt: skip
    return int(ExitCode.OK)


#: Stage2Config fields that are plain ``train`` options of the same name.
_STAGE2_OPTIONS: tuple[str, ...] = (
    "max_steps", "batch_size", "resolution", "checkpoint_every", "keep_checkpoints", "seed", "mapper_hidden",
    "mapper_depth", "num_workers", "learning_rate", "threshold", "no_confidence_weight", "mapper_dropout",
    "attribute_logit_scale", "mixed_precision", "mapper_input", "pooled_mode", "loss_mode", "ablation",
)  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    from reference.confidence import load_confidence_table, official_confidence_table
    from reference.train import Stage2Config, train_stage2

    if args.dtype != "auto":
        raise UsageError(
            f"train --dtype {args.dtype}: stage 2 casts the frozen weights to the --mixed-precision dtype "
            "(no: fp32, fp16, bf16); drop --dtype and use --mixed-precision"
        )
    if args.device not in ("auto", "cpu", "cuda"):
        raise UsageError(
            f"train --device {args.device}: accelerate picks the GPU of each process; use --device auto, cpu or "
            "cuda, and CUDA_VISIBLE_DEVICES (or accelerate launch) to choose GPUs"
        )
    values = {name: getattr(args, name) for name in _STAGE2_OPTIONS}
    config = Stage2Config(
        **values, mapper_layernorm=args.mapper_layernorm, random_flip=not args.no_random_flip,
        show_progress=not args.quiet, resume=args.resume, cpu=args.device == "cpu",
    )  # fmt: skip
    space, space_source = load_space_arg(args.space)
    table = official_confidence_table() if args.confidence == OFFICIAL else load_confidence_table(args.confidence)
    encoder = load_encoder_arg(args.encoder) if config.mapper_input == "encoder" else None
    rows = _rows(args.index, "all")
    # loaded on the CPU in fp32: stage 2 moves and casts them onto each process's device (--mixed-precision)
    components = load_components_for(argparse.Namespace(**{**vars(args), "device": "cpu", "dtype": "fp32"}), None,
                                     projection=True)
    result = train_stage2(config, components, space, table, vocabulary_from_rows(rows, config.split), rows,
                          args.emoset_root, args.out, encoder=encoder, space_source=space_source)
    _say(args, {"checkpoint": str(result.checkpoint), "steps": result.steps, "last_loss": result.last_loss,
                "loss_log": str(result.loss_log)},
         [f"stage 2 done: {result.steps} steps, last loss {result.last_loss}",
          f"checkpoint: {result.checkpoint}", f"loss log: {result.loss_log}"])  # fmt: skip
    return int(ExitCode.OK)


def _load_for_generation(args: argparse.Namespace, *, projection: bool = False) -> tuple[Any, Any, Any]:
    from reference.train import load_checkpoint

    mapper, checkpoint = load_checkpoint(args.checkpoint)
    space_value = args.space or checkpoint.get("space", {}).get("path")
    if space_value is None:
        raise UsageError(f"{args.checkpoint}: the checkpoint records no emotion space; pass --space FILE|official")
    space = load_space_arg(space_value)[0]
    components = load_components_for(args, checkpoint, projection=projection)
    parameter = next(components.unet.parameters())
    return components, mapper.to(parameter.device), space


def _generate_config(args: argparse.Namespace, **extra: Any) -> Any:
    from reference.generate import GenerateConfig

    return GenerateConfig(seed=args.seed, steps=args.steps, guidance=args.guidance, width=args.width,
                          height=args.height, batch_size=args.batch_size, show_progress=not args.quiet, **extra)


def run_generate(args: argparse.Namespace) -> int:
    from emogen_bench.submission import validate_submission
    from emogen_bench.submission.validate import resolve_run
    from reference.generate import generate_submission_summary

    kind, per_emotion = resolve_run(args.per_emotion)
    world = world_from_env()
    shard = parse_shard(args.shard, world)  # under torchrun / accelerate launch: this rank's share
    config = _generate_config(args, per_emotion=per_emotion)
    components, mapper, space = _load_for_generation(args)
    with process_group(world):
        summary = generate_submission_summary(config, components, mapper, space, args.out, shard=shard)
        barrier(world)  # rank 0 validates the folder once every rank has written its share
    if world.size > 1 and not world.is_main:
        return int(ExitCode.OK)
    lines = [
        f"submission: {args.out} ({summary.written} images written, {summary.kept} kept from an earlier run)",
        f"metadata: {summary.metadata_path}",
    ]
    document = {"out": str(args.out), "written": summary.written, "kept": summary.kept, "run": kind}
    if shard != (0, 1) and world.size == 1:
        lines.append(f"shard {shard[0]}/{shard[1]} done; validate once every shard has finished: emogen-bench "
                     f"validate {args.out}" + (f" --per-emotion {args.per_emotion}" if args.per_emotion else ""))
        _say(args, {**document, "shard": list(shard)}, lines)
        return int(ExitCode.OK)
    report = validate_submission(args.out, per_emotion=args.per_emotion, show_progress=not args.quiet)
    lines.append(f"validation: {'VALID' if report.valid else 'INVALID'} ({report.run_label})")
    lines += [f"  {p.severity}: {p.path}: {p.message}" for p in report.problems[:20]]
    _say(args, {**document, "validation": report.to_dict()}, lines)
    return int(ExitCode.OK if report.valid else ExitCode.INVALID)


def run_transfer(args: argparse.Namespace) -> int:
    from reference.generate import TRANSFER_OBJECTS, emotion_transfer

    components, mapper, space = _load_for_generation(args)
    document = emotion_transfer(_generate_config(args), components, mapper, space, args.out,
                                objects=tuple(args.objects or TRANSFER_OBJECTS))
    _say(args, document, [f"emotion transfer: {len(document['images'])} images, grid {args.out / 'transfer.png'}"])
    return int(ExitCode.OK)


def run_fusion(args: argparse.Namespace) -> int:
    from reference.generate import emotion_fusion

    components, mapper, space = _load_for_generation(args)
    document = emotion_fusion(_generate_config(args), components, mapper, space, args.out)
    _say(args, document, [f"emotion fusion: {len(document['images'])} pairs, grid {args.out / 'fusion.png'}"])
    return int(ExitCode.OK)


def run_decompose(args: argparse.Namespace) -> int:
    from reference.conditioning import attribute_text, embed_texts
    from reference.generate import DecompositionConfig, decomposition_markdown, emotion_decomposition

    components, mapper, space = _load_for_generation(args, projection=True)
    from reference.train import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)[1]
    split = checkpoint.get("stage2", {}).get("split", "train")
    vocabulary = vocabulary_from_rows(_rows(args.index, "all"), split)
    embeds = embed_texts(components.tokenizer, components.text_encoder, components.text_projection,
                         [attribute_text(name) for name in vocabulary])
    config = DecompositionConfig(samples=args.samples, top_k=args.top_k, seed=args.seed,
                                 pooled_mode=checkpoint.get("pooled_mode", "eos"))
    table = emotion_decomposition(config, components, mapper, space, embeds, vocabulary, args.out)
    document = {emotion: [{"attribute": n, "cosine": s} for n, s in entries] for emotion, entries in table.items()}
    _say(args, document, [decomposition_markdown(table), f"written: {args.out}/decomposition.{{json,md,png}}"])
    return int(ExitCode.OK)


def run_smoke_command(args: argparse.Namespace) -> int:
    from reference.smoke import run_smoke

    result = run_smoke(args.out, workdir=args.workdir, show_progress=not args.quiet)
    _say(args, result.to_dict(), result.lines())
    return int(ExitCode.OK if result.valid else ExitCode.INVALID)


__all__ = ["register"]
