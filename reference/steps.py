"""The reference's steps as Python functions: what ``reference <step>``, the smoke run and ``tables regenerate`` share.

The command line (``reference/cli.py``) only parses options and calls these; ``reference/smoke.py`` and
``leaderboard/regenerate`` call them directly, so none of them imports the CLI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError

#: The value of ``--space``, ``--encoder``, ``--confidence`` and ``--head`` that means the released files.
OFFICIAL = "official"
#: ``model_id`` of :func:`reference.sd.tiny_sd_components`: a checkpoint trained on them generates with them.
TINY_MODEL_ID = "tiny-sd"
SPACE_FILE = "space.safetensors"
SPACE_REPORT_JSON = "space_report.json"
SPACE_REPORT_TXT = "space_report.txt"
HEAD_FILE = "clip_head.pth"
CONFIDENCE_FILE = "confidence.json"


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return "sha256:" + hasher.hexdigest()


def _refuse_existing(paths: Sequence[Path]) -> None:
    taken = [str(path) for path in paths if path.exists()]
    if taken:
        raise UsageError(f"{', '.join(taken)} already exist(s); choose another --out folder (nothing was written)")


def space_step(
    encoder: Any,
    rows: Sequence[Any],
    emoset_root: str | Path,
    out_dir: str | Path,
    *,
    statistics: Any | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    source: str = "",
    show_progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Fit the emotion space on ``rows`` (or take ``statistics``) and report how well it fits the features.

    Writes ``space.safetensors`` (only when fitted), ``space_report.json`` and ``space_report.txt``
    into ``out_dir``; returns ``(space, report)``.
    """
    from torch.utils.data import DataLoader

    from reference.data import EmoSetImages, encoder_transform
    from reference.space import collect_features, fit_space, format_space_report, space_report

    out_dir = Path(out_dir)
    outputs = [out_dir / SPACE_REPORT_JSON, out_dir / SPACE_REPORT_TXT]
    _refuse_existing(outputs + ([] if statistics is not None else [out_dir / SPACE_FILE]))
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder.to(device)
    dataset = EmoSetImages(rows, emoset_root, encoder_transform(False))

    def loader() -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)

    space = statistics
    if space is None:
        space = fit_space(encoder, loader(), device=device, show_progress=show_progress, source=source)
        space.save(out_dir / SPACE_FILE)
    features = collect_features(encoder, loader(), device=device, show_progress=show_progress)
    report = space_report(features, space)
    from emogen_bench.fileio import write_atomic, write_json_atomic

    write_json_atomic(out_dir / SPACE_REPORT_JSON, report, overwrite=False)
    write_atomic(out_dir / SPACE_REPORT_TXT, format_space_report(report), overwrite=False)
    return space, report


def confidence_step(
    embeddings: Any,
    rows: Sequence[Any],
    out_dir: str | Path,
    *,
    head: Any | None = None,
    threshold: float = 0.0,
    epochs: int = 30,
    lr: float = 1e-3,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train the CLIP-space emotion head (unless ``head`` is given) and compute the attribute confidence table.

    ``embeddings`` (N, D) are the CLIP image embeddings of ``rows``, in order. The head trains on the
    ``train`` rows and is scored on ``test`` (else ``val``, else ``train``); the table averages its
    probabilities over all rows per attribute. Writes ``clip_head.pth`` and ``confidence.json``.
    """
    import torch

    from reference.confidence import (
        attribute_confidence,
        attribute_counts,
        emotion_probabilities,
        filter_attributes,
        save_clip_head,
        save_confidence_table,
        train_clip_head,
    )

    out_dir = Path(out_dir)
    _refuse_existing([out_dir / HEAD_FILE, out_dir / CONFIDENCE_FILE])
    embeddings = torch.as_tensor(embeddings).float()
    labels = torch.tensor([row.emotion_id for row in rows], dtype=torch.long)
    by_split = {split: [i for i, row in enumerate(rows) if row.split == split] for split in ("train", "val", "test")}
    held_out = next(split for split in ("test", "val", "train") if by_split[split])
    accuracy = None
    if head is None:
        train, evaluate = by_split["train"], by_split[held_out]
        if not train:
            raise UsageError("the index has no train rows: the CLIP emotion head has nothing to train on")
        head, accuracy = train_clip_head(
            embeddings[train], labels[train], eval_embeddings=embeddings[evaluate], eval_labels=labels[evaluate],
            epochs=epochs, lr=lr, seed=seed, show_progress=show_progress,
        )  # fmt: skip
    else:
        evaluate = by_split[held_out]
        predictions = emotion_probabilities(head, embeddings[evaluate]).argmax(dim=1)
        accuracy = float((predictions == labels[evaluate]).double().mean())
    probabilities = emotion_probabilities(head, embeddings)
    attributes = [row.attribute for row in rows]
    table = attribute_confidence(probabilities, attributes)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_clip_head(head, out_dir / HEAD_FILE)
    kept = filter_attributes(table, threshold=threshold)
    summary = {
        "head_accuracy": accuracy,
        "accuracy_split": held_out,
        "threshold": threshold,
        "attributes": len(table),
        "kept_per_emotion": {emotion: len(names) for emotion, names in kept.items()},
    }
    save_confidence_table(table, out_dir / CONFIDENCE_FILE, counts=attribute_counts(attributes), extra=summary)
    return {**summary, "table": out_dir / CONFIDENCE_FILE, "head": out_dir / HEAD_FILE}


# ---- loading what a step needs --------------------------------------------------------------------------------


def load_space_arg(value: str | None) -> tuple[Any, dict[str, Any]]:
    """``--space``: ``official`` or a ``space.safetensors`` path -> (space, what a checkpoint records)."""
    from reference.space import EmotionSpace, load_official_space

    if value is None:
        raise UsageError("--space is required: a space.safetensors written by `reference space`, or 'official'")
    if value == OFFICIAL:
        space = load_official_space()
        return space, {"path": OFFICIAL, "source": space.source}
    path = Path(value)
    if not path.is_file():
        raise UsageError(f"--space {path}: no such file; give the space.safetensors of `reference space` or 'official'")
    return EmotionSpace.load(path), {"path": str(path.resolve()), "digest": file_digest(path)}


def load_encoder_arg(value: str | None) -> Any:
    """``--encoder``: ``official`` (artifact ``emo-resnet50-emoset``) or a stage-1 ``best.pt``."""
    from reference.encoder import load_encoder, load_official_encoder

    if value is None:
        raise UsageError("--encoder is required: the best.pt of `reference stage1`, or 'official'")
    return load_official_encoder() if value == OFFICIAL else load_encoder(value)
