"""Stage 1 of EmoGen: the emotion encoder, an 8-way emotion classifier whose ``fc_1`` output is the emotion feature.

Architecture (PROTOCOL.md section 5): a ResNet-50 trunk (ImageNet init), average
pool, flatten, ``fc_1`` Linear(2048, 768), ReLU, Dropout(0.5), ``fc_2``
Linear(768, 8).  :meth:`EmotionClassifier.encode` is the 768-d ``fc_1`` output
BEFORE the ReLU, the representation the emotion space is built on.

Training (:func:`train_stage1`) follows the supplement where it speaks (lr 1e-3,
batch 32) and chooses the rest, recorded in every checkpoint: SGD with momentum
0.9 and weight decay 1e-4 at a constant learning rate (``optimizer="adamw"`` is
the alternative), cross-entropy on the ``train`` split of the prepared index,
accuracy on ``val`` after every epoch, the checkpoint with the best ``val``
accuracy kept and evaluated on ``test`` at the end.  Every epoch's randomness
(shuffling, crops, flips, dropout) comes from seeds derived from
``(config.seed, epoch)``, so a run resumed from its last epoch checkpoint
continues exactly as an uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision.models import resnet50
from tqdm.auto import tqdm

from emogen_bench.data import index_digest, load_index
from emogen_bench.errors import DataError, UsageError, WeightsError
from emogen_bench.fileio import atomic_writer, write_atomic, write_json_atomic
from emogen_bench.pipeline import resolve_device
from emogen_bench.task import EMOTIONS
from emogen_bench.weights import WeightStore, load_artifact, open_store
from reference.data import EmoSetImages, encoder_transform, split_rows

#: Size of the emotion feature (``fc_1`` output).
EMBED_DIM = 768
NUM_EMOTIONS = len(EMOTIONS)
RESNET50_FEATURES = 2048
TRUNKS: tuple[str, ...] = ("resnet50", "tiny")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOG_FILE = "log.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FORMAT = "emogen-bench.reference.stage1"
CHECKPOINT_FORMAT_VERSION = 1


class TinyTrunk(nn.Module):
    """A small CNN with the trunk interface (images -> (B, ``feature_dim``) pooled features): tests, smoke runs."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.feature_dim = width
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, width, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def resnet50_trunk(imagenet: nn.Module | None = None) -> nn.Module:
    """torchvision ResNet-50 whose ``fc`` is the identity: images -> (B, 2048) average-pooled features.

    ``imagenet``: a loaded ResNet-50 (e.g. the ``resnet50-imagenet-v1``
    artifact) to start from, made trainable again; ``None``: random init.
    """
    trunk = resnet50(weights=None) if imagenet is None else imagenet
    trunk.fc = nn.Identity()
    trunk.requires_grad_(True)
    return trunk.train()


class EmotionClassifier(nn.Module):
    """trunk -> ``fc_1`` Linear(C, 768) -> ReLU -> Dropout(0.5) -> ``fc_2`` Linear(768, 8).

    ``trunk`` maps images to pooled (B, C) features (default: the ResNet-50
    trunk, C = 2048); ``feature_dim`` is C, read from ``trunk.feature_dim``
    when not given.
    """

    def __init__(
        self,
        trunk: nn.Module | None = None,
        *,
        feature_dim: int | None = None,
        embed_dim: int = EMBED_DIM,
        num_emotions: int = NUM_EMOTIONS,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if trunk is None:
            trunk, feature_dim = resnet50_trunk(), RESNET50_FEATURES
        feature_dim = feature_dim if feature_dim is not None else getattr(trunk, "feature_dim", None)
        if feature_dim is None:
            raise UsageError("EmotionClassifier: give feature_dim (the trunk's output size) for a custom trunk")
        self.trunk = trunk
        self.fc_1 = nn.Linear(feature_dim, embed_dim)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc_2 = nn.Linear(embed_dim, num_emotions)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The emotion feature: the ``fc_1`` output (B, 768), before the ReLU."""
        return self.fc_1(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Emotion logits (B, 8), class k = ``task.EMOTIONS[k]``."""
        return self.fc_2(self.dropout(self.relu(self.encode(images))))


def classifier_from_emoset_resnet50(model: nn.Module) -> EmotionClassifier:
    """The same weights as the benchmark's ``EmoSetResNet50`` (released layout) in an :class:`EmotionClassifier`.

    ``cnn.*`` (less ``cnn.fc``) becomes the trunk, ``fc_1`` stays, ``fc_2.2``
    becomes ``fc_2``; the released ``backbone.*`` twins are the same modules.
    """
    state = model.state_dict()
    mapped = {
        f"trunk.{k[len('cnn.') :]}": v for k, v in state.items() if k.startswith("cnn.") and not k.startswith("cnn.fc.")
    }
    mapped.update({k: v for k, v in state.items() if k.startswith("fc_1.")})
    mapped.update({f"fc_2.{k[len('fc_2.2.') :]}": v for k, v in state.items() if k.startswith("fc_2.2.")})
    classifier = EmotionClassifier()
    classifier.load_state_dict(mapped, strict=True)
    return classifier.eval().requires_grad_(False)


def load_official_encoder(store: WeightStore | None = None) -> EmotionClassifier:
    """The released encoder ``2023-08-22-best.pth`` (artifact ``emo-resnet50-emoset``), eval mode, frozen."""
    loaded = load_artifact("emo-resnet50-emoset", store if store is not None else open_store())
    return classifier_from_emoset_resnet50(loaded.value)


# ---- configuration and model building ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stage1Config:
    """Stage-1 training settings; the CLI reads its defaults from here.

    ``lr`` and ``batch_size`` are the supplement's; the optimiser, its
    momentum and weight decay, the epoch count and the train-time crop/flip
    are this implementation's choices.  ``steps_per_epoch`` caps each epoch
    (smoke runs); ``None`` is a full pass.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    trunk: str = "resnet50"
    pretrained: bool = True
    resize: int = 256
    crop: int = 224
    augment: bool = True
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 4
    eval_batch_size: int = 64
    show_progress: bool = True
    mixed_precision: str = "no"

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UsageError(f"stage 1: mixed_precision {self.mixed_precision!r}: expected no, fp16 or bf16")
        if self.trunk not in TRUNKS:
            raise UsageError(f"unknown trunk {self.trunk!r}; expected one of {', '.join(TRUNKS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "resize", "crop"):
            if getattr(self, name) < 1:
                raise UsageError(f"stage 1: {name} must be >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UsageError(f"stage 1: steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if self.lr <= 0 or self.num_workers < 0:
            raise UsageError("stage 1: lr must be > 0 and num_workers >= 0")


#: Settings that may change when a run is resumed (they do not define the model or its training).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"epochs", "device", "num_workers", "eval_batch_size", "show_progress"})


def build_classifier(
    config: Stage1Config, store: WeightStore | None = None, *, imagenet_init: bool = True
) -> EmotionClassifier:
    """A fresh classifier for ``config`` (fc layers from the current torch seed).

    The ResNet-50 trunk starts from ImageNet (artifact ``resnet50-imagenet-v1``)
    when ``config.pretrained`` and ``imagenet_init`` are true.
    """
    if config.trunk == "tiny":
        return EmotionClassifier(TinyTrunk())
    imagenet = None
    if config.pretrained and imagenet_init:
        try:
            imagenet = load_artifact("resnet50-imagenet-v1", store if store is not None else open_store()).value
        except WeightsError as exc:
            raise WeightsError(
                f"{exc} Stage 1 starts the ResNet-50 from ImageNet; pass pretrained=False (--no-pretrained) to "
                "start from random weights instead."
            ) from exc
    return EmotionClassifier(resnet50_trunk(imagenet), feature_dim=RESNET50_FEATURES)


def make_optimizer(model: nn.Module, config: Stage1Config) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or AdamW over every parameter of ``model``, at ``config.lr``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


# ---- one step, evaluation ------------------------------------------------------------------------------------


def stage1_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
    accelerator: Any = None,
) -> tuple[float, int]:
    """One optimisation step of the cross-entropy; returns (loss, number of correct predictions) of the batch.

    With an ``accelerate.Accelerator`` the forward runs under its autocast (mixed precision) and the
    backward through it (gradients averaged over processes).
    """
    with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    if accelerator is not None:
        accelerator.backward(loss)
    else:
        loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(dim=1) == labels).sum())


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu", *, show_progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, 8), labels (N,))`` on CPU, in loader order, with the model in eval mode."""
    model.eval()
    logits, labels = [], []
    for images, batch_labels, _ in tqdm(loader, desc="evaluate", disable=not show_progress, leave=False):
        logits.append(model(images.to(device)).float().cpu())
        labels.append(batch_labels)
    if not logits:
        return torch.empty(0, NUM_EMOTIONS), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy; NaN for no samples."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(dim=1) == labels).double().mean())


# ---- checkpoints ---------------------------------------------------------------------------------------------


def _save_torch(obj: Any, path: Path) -> None:
    with atomic_writer(path) as handle:
        torch.save(obj, handle)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise WeightsError(f"{path}: cannot read the stage-1 checkpoint ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(
            f"{path}: not a stage-1 checkpoint of emogen-bench's reference (format {CHECKPOINT_FORMAT})."
        )
    if checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise WeightsError(
            f"{path}: stage-1 checkpoint version {checkpoint.get('format_version')!r}; this release reads "
            f"version {CHECKPOINT_FORMAT_VERSION}. Train again with this release."
        )
    return checkpoint


def config_from_dict(values: Mapping[str, Any]) -> Stage1Config:
    """A :class:`Stage1Config` from its ``asdict`` form (unknown keys refused)."""
    known = {f.name for f in fields(Stage1Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"stage-1 config: unknown setting(s) {', '.join(unknown)}")
    return Stage1Config(**values)


def load_encoder(path: str | Path) -> EmotionClassifier:
    """A classifier from a stage-1 checkpoint (``best.pt`` or ``last.pt``), eval mode, frozen."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: stage-1 checkpoint not found; pass the best.pt written by `reference stage1`")
    checkpoint = _read_checkpoint(path)
    config = config_from_dict(checkpoint["config"])
    model = build_classifier(config, imagenet_init=False)
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: the weights do not fit the {config.trunk} classifier ({exc}).") from exc
    return model.eval().requires_grad_(False)


# ---- training --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage1Result:
    """What a stage-1 run produced: checkpoints, per-epoch history, best epoch and test accuracy."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    config: Stage1Config
    index_digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``result.json`` of the run)."""
        return {
            "out_dir": str(self.out_dir),
            "best_checkpoint": str(self.best_checkpoint),
            "last_checkpoint": str(self.last_checkpoint),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "test_accuracy": self.test_accuracy,
            "index_digest": self.index_digest,
            "config": asdict(self.config),
            "history": self.history,
            **self.extra,
        }


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based): shuffling, augmentation and dropout of that epoch."""
    return seed * 1_000_003 + epoch + 1


def _check_out_dir(out_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None; refuses to write over another run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; choose another --out")
    ours = [out_dir / name for name in (LAST_CHECKPOINT, BEST_CHECKPOINT, LOG_FILE, RESULT_FILE)]
    present = [path.name for path in ours if path.exists()]
    if resume and (out_dir / LAST_CHECKPOINT).is_file():
        return _read_checkpoint(out_dir / LAST_CHECKPOINT)
    if present:
        hint = "" if resume else " pass resume=True (--resume) to continue it, or"
        raise UsageError(f"{out_dir}: already holds a stage-1 run ({', '.join(present)});{hint} choose another --out")
    return None


def _check_resumable(saved: Mapping[str, Any], config: Stage1Config, path: Path) -> None:
    current = asdict(config)
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise UsageError(
            f"{path}: cannot resume with different training settings ({details}); only "
            f"{', '.join(sorted(RESUMABLE_CHANGES))} may change. Use the run's settings or another --out."
        )


def _loader(
    dataset: EmoSetImages,
    config: Stage1Config,
    device: torch.device,
    *,
    generator: torch.Generator | None,
    process: int = 0,
    processes: int = 1,
) -> DataLoader:
    training = generator is not None
    if training and processes > 1:  # one seeded permutation, every process its interleaved, equally long share
        order = torch.randperm(len(dataset), generator=generator).tolist()
        share = -(-len(order) // processes)
        order = (order * 2)[: share * processes]  # wrapped so every process takes the same number of steps
        return DataLoader(
            dataset, batch_size=config.batch_size, sampler=order[process::processes], num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=config.batch_size if training else config.eval_batch_size,
        shuffle=training,
        generator=generator,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )


def train_stage1(
    config: Stage1Config,
    index_dir: str | Path,
    emoset_root: str | Path,
    out_dir: str | Path,
    *,
    store: WeightStore | None = None,
    resume: bool = False,
) -> Stage1Result:
    """Train the emotion encoder on the index's ``train`` split; writes checkpoints, ``log.jsonl`` and ``result.json``.

    ``out_dir`` gets ``last.pt`` (model, optimiser, history: resumable),
    ``best.pt`` (the best ``val`` accuracy so far; the last epoch where ``val``
    is empty), ``log.jsonl`` (one line per epoch) and ``result.json``.  With
    ``resume`` a run continues after the last completed epoch of ``last.pt``.
    """
    out_dir = Path(out_dir)
    rows = load_index(index_dir)
    splits = {split: split_rows(rows, split) for split in ("train", "val", "test")}
    if not splits["train"]:
        raise DataError(f"{index_dir}: the index has no train rows; stage 1 needs EmoSet's train split")
    from accelerate import Accelerator

    device = resolve_device(config.device)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=device.type == "cpu")
    device = accelerator.device if accelerator.num_processes > 1 else device
    checkpoint = _check_out_dir(out_dir, resume)
    if checkpoint is not None:
        _check_resumable(checkpoint["config"], config, out_dir / LAST_CHECKPOINT)
    accelerator.wait_for_everyone()  # every process has checked the folder before the first one writes to it
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    train_set = EmoSetImages(
        splits["train"], emoset_root, encoder_transform(config.augment, resize=config.resize, crop=config.crop)
    )
    eval_transform = encoder_transform(False, resize=config.resize, crop=config.crop)
    eval_sets = {split: EmoSetImages(splits[split], emoset_root, eval_transform) for split in ("val", "test")}
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(config.seed)
        model = build_classifier(config, store, imagenet_init=checkpoint is None).to(device)
        optimizer = make_optimizer(model, config)
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"epoch": 0, "val_accuracy": None}
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            history, best = list(checkpoint["history"]), dict(checkpoint["best"])
        model, optimizer = accelerator.prepare(model, optimizer)
        for epoch in range(len(history), config.epochs):
            history.append(_train_epoch(model, optimizer, train_set, eval_sets["val"], config, device, epoch,
                                        accelerator))  # fmt: skip
            val_accuracy = history[-1]["val_accuracy"]
            improved = best["val_accuracy"] is None or (
                val_accuracy is not None and val_accuracy > best["val_accuracy"]
            )
            state = {k: v.detach().cpu() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            meta = {
                "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, "config": asdict(config),
                "processes": accelerator.num_processes,
                "effective_batch_size": config.batch_size * accelerator.num_processes,
            }  # fmt: skip
            if improved or val_accuracy is None:
                best = {"epoch": epoch + 1, "val_accuracy": val_accuracy}
            if not accelerator.is_main_process:
                continue  # one process writes the checkpoints and the log
            if best["epoch"] == epoch + 1:
                _save_torch(
                    {**meta, "kind": "best", "epoch": epoch + 1, "model": state, "best": best},
                    out_dir / BEST_CHECKPOINT,
                )
            _save_torch(
                {**meta, "kind": "last", "epoch": epoch + 1, "model": state, "optimizer": optimizer.state_dict(),
                 "history": history, "best": best},
                out_dir / LAST_CHECKPOINT,
            )  # fmt: skip
            write_atomic(out_dir / LOG_FILE, "".join(json.dumps(entry, allow_nan=False) + "\n" for entry in history))
    accelerator.wait_for_everyone()  # the checkpoints are written before any process reads them
    best_model = load_encoder(out_dir / BEST_CHECKPOINT).to(device)
    test_accuracy = None
    if len(eval_sets["test"]):
        logits, labels = predict(best_model, _loader(eval_sets["test"], config, device, generator=None), device,
                                 show_progress=config.show_progress)  # fmt: skip
        test_accuracy = accuracy(logits, labels)
    result = Stage1Result(
        out_dir=out_dir,
        best_checkpoint=out_dir / BEST_CHECKPOINT,
        last_checkpoint=out_dir / LAST_CHECKPOINT,
        history=history,
        best_epoch=int(best["epoch"]),
        best_val_accuracy=best["val_accuracy"],
        test_accuracy=test_accuracy,
        config=config,
        index_digest=index_digest(rows),
        extra={"rows": {split: len(split_rows_) for split, split_rows_ in splits.items()}},
    )
    if accelerator.is_main_process:
        write_json_atomic(out_dir / RESULT_FILE, result.to_dict())
    return result


def _train_epoch(
    model: EmotionClassifier,
    optimizer: torch.optim.Optimizer,
    train_set: EmoSetImages,
    val_set: EmoSetImages,
    config: Stage1Config,
    device: torch.device,
    epoch: int,
    accelerator: Any = None,
) -> dict[str, Any]:
    """One epoch of training then validation; returns its log entry (loss and accuracy over every process)."""
    seed = epoch_seed(config.seed, epoch)
    torch.manual_seed(seed)
    process = accelerator.process_index if accelerator is not None else 0
    processes = accelerator.num_processes if accelerator is not None else 1
    loader = _loader(train_set, config, device, generator=torch.Generator().manual_seed(seed), process=process,
                     processes=processes)  # fmt: skip
    steps = len(loader) if config.steps_per_epoch is None else min(len(loader), config.steps_per_epoch)
    model.train()
    started = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    main = accelerator is None or accelerator.is_local_main_process
    bar = tqdm(loader, total=steps, desc=f"stage 1 epoch {epoch + 1}/{config.epochs}",
               disable=not (config.show_progress and main), leave=False, dynamic_ncols=True)  # fmt: skip
    for step, (images, labels, _) in enumerate(bar):
        if step >= steps:
            break
        loss, batch_correct = stage1_step(model, optimizer, images.to(device), labels.to(device), accelerator)
        total_loss += loss * len(labels)
        correct += batch_correct
        seen += len(labels)
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    if processes > 1:  # the epoch's loss and accuracy over every process's images
        totals = accelerator.reduce(torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device))
        total_loss, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
    val_accuracy = None
    if len(val_set):  # every process evaluates the whole val split with the same weights: the same number
        evaluated = accelerator.unwrap_model(model) if accelerator is not None else model
        logits, labels = predict(evaluated, _loader(val_set, config, device, generator=None), device,
                                 show_progress=config.show_progress and main)  # fmt: skip
        val_accuracy = accuracy(logits, labels)
    return {
        "epoch": epoch + 1,
        "steps": steps,
        "train_loss": total_loss / max(seen, 1),
        "train_accuracy": correct / max(seen, 1),
        "val_accuracy": val_accuracy,
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": round(time.perf_counter() - started, 3),
    }
