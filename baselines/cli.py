"""``emogen-bench baseline <name> train|generate``: a thin face over :mod:`baselines.common`.

Options that every baseline understands map onto its settings (``--steps`` is the number of training
steps for ``train`` and of sampler steps for ``generate``); anything else goes through ``--set KEY=VALUE``.
Registered through the ``emogen_bench.commands`` entry point ``baseline = "baselines.cli:register"``.
:mod:`baselines.common` imports torch, so it is imported by the handlers and by the deferred builder of the
options (:func:`emogen_bench.cli.defer_arguments`), never at start-up: ``emogen-bench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from emogen_bench.cli import defer_arguments
from emogen_bench.distributed import barrier, parse_shard, process_group, world_from_env
from emogen_bench.errors import UsageError


def _merge(explicit: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Settings from the named options (those given) and ``--set``; the same key twice is a UsageError."""
    from baselines.common import parse_set_options

    given = {key: value for key, value in explicit.items() if value is not None}
    extra = parse_set_options(pairs)
    clash = sorted(set(given) & {key.replace("-", "_") for key in extra})
    if clash:
        raise UsageError(f"{', '.join(clash)} given both as an option and with --set; give it once")
    return {**given, **extra}


def _train_on_cpu(device: str) -> bool | None:
    """``--device`` of ``train`` as the ``cpu`` setting: training runs on accelerate's device, not the loaded one."""
    if device == "cpu":
        return True
    if device in ("auto", "cuda", "cuda:0"):
        return None
    raise UsageError(
        f"--device {device}: training runs on accelerate's device (the first visible GPU, or the CPU with "
        "--device cpu); choose the GPU with CUDA_VISIBLE_DEVICES instead"
    )


def train_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings mapping ``train`` receives from the command line."""
    explicit = {
        "seed": args.seed,
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "resolution": args.size,
        "show_progress": False if args.quiet else None,
        "cpu": _train_on_cpu(args.device),
    }
    return _merge(explicit, args.set)


def generate_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings mapping ``generate`` receives from the command line."""
    explicit = {
        "per_emotion": args.per_emotion,
        "seed": args.seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "width": args.size,
        "height": args.size,
        "batch_size": args.batch_size,
        "show_progress": False if args.quiet else None,
    }
    return _merge(explicit, args.set)


def _components(args: argparse.Namespace, checkpoint: Path | None, training: bool) -> Any:
    from baselines.common import load_components

    dtype = args.dtype if args.dtype != "auto" or not training else "fp32"
    return load_components(
        args.sd_model, args.sd_revision, tiny=args.tiny, device=args.device, dtype=dtype,
        allow_download=args.allow_download, checkpoint=checkpoint,
    )  # fmt: skip


def _report(args: argparse.Namespace, document: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        for key, value in document.items():
            print(f"{key}: {value}")


def run_train(args: argparse.Namespace) -> int:
    """``baseline NAME train``: returns 0 after printing the checkpoint folder."""
    from baselines.common import get_baseline

    baseline = get_baseline(args.baseline)
    if not baseline.trains:
        raise UsageError(f"the {args.baseline} baseline has nothing to train; run `baseline {args.baseline} generate`")
    for option, path in (("--index", args.index), ("--emoset-root", args.emoset_root)):
        if not path.is_dir():
            raise UsageError(f"{option} {path}: no such folder")
    settings = train_settings(args)
    components = _components(args, None, training=True)
    checkpoint = baseline.train(
        settings, args.index, args.emoset_root, args.out, components=components, resume=args.resume
    )
    _report(args, {"baseline": args.baseline, "checkpoint": str(checkpoint)})
    return 0


def run_generate(args: argparse.Namespace) -> int:
    """``baseline NAME generate``: returns 0 after printing the submission folder."""
    from baselines.common import get_baseline

    baseline = get_baseline(args.baseline)
    if baseline.trains and args.checkpoint is None:
        raise UsageError(f"baseline {args.baseline} generate needs --checkpoint (the folder its train step wrote)")
    if args.checkpoint is not None and not args.checkpoint.is_dir():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such folder")
    settings = generate_settings(args)
    world = world_from_env()
    shard = parse_shard(args.shard, world)  # under torchrun / accelerate launch: this rank's share
    components = _components(args, args.checkpoint, training=False)
    with process_group(world):
        out = baseline.generate(settings, args.checkpoint, args.out, components=components, shard=shard)
        barrier(world)
    if world.is_main:
        shown = {} if shard == (0, 1) else {"shard": f"{shard[0]}/{shard[1]}" if world.size == 1 else "all ranks done"}
        _report(args, {"baseline": args.baseline, "submission": str(out), **shown})
    return 0


def _shared(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a baseline setting (repeatable), e.g. --set learning_rate=5e-4; docs/baselines.md "
                             "lists each baseline's settings")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: the baseline's, 0)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: the baseline's)")
    parser.add_argument("--sd-model", metavar="ID|DIR", default=None,
                        help="Stable Diffusion: a Hub id or a local diffusers folder (default: the pinned SD-1.5, "
                             "or the one a --checkpoint was trained on)")
    parser.add_argument("--sd-revision", metavar="REV", default=None, help="Hub revision (default: the pinned one)")
    parser.add_argument("--allow-download", action="store_true",
                        help="allow downloading missing weights from the Hugging Face Hub (default: local files only)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random SD components built in code (tests and smoke runs; images are noise)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (default)")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="weights dtype (default auto: fp32 for train, which sets mixed precision with "
                             "--set mixed_precision=fp16; for generate fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baseline <name> train|generate`` to the ``emogen-bench`` parser."""
    parser = subparsers.add_parser(
        "baseline",
        help="train and run the paper's baselines (SD, Textual Inversion, DreamBooth, caption-finetuned SD)",
        description="Baselines of the EICG task; docs/baselines.md gives their settings, commands and GPU costs.",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    defer_arguments(parser, _add_actions)


def _add_actions(parser: argparse.ArgumentParser) -> None:
    """The baseline's name and its ``train`` and ``generate`` actions (the names come from torch-importing
    :mod:`baselines.common`, hence deferred)."""
    from baselines.common import BASELINES

    parser.add_argument("baseline", choices=list(BASELINES), metavar="NAME", help=f"one of {', '.join(BASELINES)}")
    actions = parser.add_subparsers(dest="baseline_action", metavar="ACTION")

    train = actions.add_parser("train", help="train the baseline on the derived subset (not for sd)")
    train.add_argument("--index", type=Path, required=True, metavar="DIR", help="the --out folder of `data prepare`")
    train.add_argument("--emoset-root", type=Path, required=True, metavar="DIR", help="the EmoSet folder it came from")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="the checkpoint folder to write")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: the method's own)")
    train.add_argument("--size", type=int, default=None, help="training resolution (default 512)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    _shared(train)
    train.set_defaults(handler=run_train)

    generate = actions.add_parser("generate", help="write a benchmark submission (images + submission.json)")
    generate.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="the submission folder (a rerun with the same settings completes it)")
    generate.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                          help="the folder `baseline NAME train` wrote (not for sd)")
    generate.add_argument("--per-emotion", type=int, default=None, help="images per emotion (default 1000)")
    generate.add_argument("--steps", type=int, default=None, help="UniPC sampler steps (default 50)")
    generate.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default 7.5)")
    generate.add_argument("--size", type=int, default=None, help="image width and height (default 512)")
    generate.add_argument("--shard", metavar="K/N", default=None,
                          help="render only the K-th of N processes' batches (0-based) into --out; under torchrun or "
                               "accelerate launch each rank takes its share without it")
    _shared(generate)
    generate.set_defaults(handler=run_generate)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return int(UsageError.exit_code)
