"""BLIP-2 captions for the images of an EICG index, written beside it (for the caption-finetuned SD baseline).

The supplement (section 2.1) captions every image with ``Salesforce/blip2-opt-2.7b``; here it is loaded through
transformers' ``Blip2ForConditionalGeneration`` and ``Blip2Processor`` by Hub id at a revision (from the local
cache unless downloads are allowed) or from a local folder, and run in batches with greedy decoding (no
prompt: plain image captioning, ``max_new_tokens`` 30), which is deterministic.

Output: ``captions.jsonl`` (by default in the index folder), one JSON line per image: ``id``, ``sha256`` (of the
image file as read) and ``caption``; and ``captions.json`` beside it, the captioner that wrote the lines (model,
revision, decoding settings). Each batch is appended as one write and fsynced, so the file only ever ends in a
torn last batch if the process died during that write; the next run cuts the torn tail and captions those images
again. Runs are resumable: images whose id is already in the file are skipped, and the batches are fixed chunks of
the target rows, so a resumed run captions exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from emogen_bench.data import IndexRow, load_index
from emogen_bench.distributed import World
from emogen_bench.errors import DataError, UsageError, WeightsError
from emogen_bench.fileio import write_json_atomic
from emogen_bench.hashing import sha256_bytes
from emogen_bench.progress import progress
from emogen_bench.safe_read import decode_text, loads_json, read_json

BLIP2_MODEL = "Salesforce/blip2-opt-2.7b"
#: Not pinned yet (the Hub could not be reached when this was written): ``None`` reads ``main``; the commit that
#: was actually loaded is recorded in ``captions.json``. Pass ``revision=`` to pin one.
BLIP2_REVISION: str | None = None
CAPTIONS_FILE = "captions.jsonl"
CAPTIONS_FORMAT = "emogen-bench.captions"
CAPTIONS_VERSION = 1
#: ``model`` value of the tiny captioner built in code (tests and the smoke plan).
TINY_MODEL = "tiny-blip2"
TINY_WEIGHT_SCALE = 10.0


@dataclass(frozen=True)
class CaptionConfig:
    """How captions are made: model (Hub id, local folder, or ``tiny-blip2``), revision, batching, decoding.

    ``dtype`` ``auto`` is float16 on a GPU and float32 on the CPU. ``split`` limits the rows (``all``: every row).
    """

    model: str = BLIP2_MODEL
    revision: str | None = BLIP2_REVISION
    batch_size: int = 16
    max_new_tokens: int = 30
    num_beams: int = 1
    device: str = "cpu"
    dtype: str = "auto"
    allow_download: bool = False
    split: str = "all"
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.num_beams < 1:
            raise UsageError("caption batch_size, max_new_tokens and num_beams must be at least 1")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise UsageError(f"caption dtype {self.dtype!r}: expected auto, float32, float16 or bfloat16")
        if self.split not in ("all", "train", "val", "test"):
            raise UsageError(f"caption split {self.split!r}: expected all, train, val or test")

    def identity(self) -> dict[str, Any]:
        """What makes two runs' captions comparable (checked before a file is extended)."""
        return {"model": self.model, "revision": self.revision, "max_new_tokens": self.max_new_tokens,
                "num_beams": self.num_beams}  # fmt: skip


@dataclass(frozen=True)
class CaptionRecord:
    """One line of ``captions.jsonl``."""

    id: str
    sha256: str
    caption: str


@dataclass(frozen=True)
class CaptionSummary:
    """What :func:`caption_index` did: the file, how many images it captioned now and how many were there."""

    path: Path
    captioned: int
    skipped: int
    batches: int


class Captioner:
    """A BLIP-2 model and its processor: a list of RGB images -> their captions (greedy or beam search)."""

    def __init__(self, model: Any, processor: Any, *, name: str, revision: str | None) -> None:
        self.model, self.processor, self.name, self.revision = model.eval(), processor, name, revision

    @property
    def commit(self) -> str | None:
        """The Hub commit the weights came from, when transformers recorded it."""
        return getattr(self.model.config, "_commit_hash", None)

    def to(self, device: str | torch.device) -> Captioner:
        """Move the model; returns ``self``."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image], *, max_new_tokens: int = 30, num_beams: int = 1) -> list[str]:
        parameter = next(self.model.parameters())
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(parameter.device, parameter.dtype)
        output = self.model.generate(
            pixel_values=pixels, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False
        )
        return [text.strip() for text in self.processor.batch_decode(output, skip_special_tokens=True)]


def _dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_captioner(config: CaptionConfig = CaptionConfig()) -> Captioner:
    """BLIP-2 by Hub id at ``config.revision`` (local cache unless ``allow_download``), a local folder, or tiny."""
    if config.model == TINY_MODEL:
        return tiny_captioner().to(config.device)
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    folder = Path(config.model).expanduser()
    if folder.is_dir():
        source, kwargs = str(folder), {}
    else:
        source, kwargs = config.model, {"revision": config.revision, "local_files_only": not config.allow_download}
    try:
        processor = Blip2Processor.from_pretrained(source, **kwargs)
        model = Blip2ForConditionalGeneration.from_pretrained(
            source, dtype=_dtype(config.dtype, config.device), **kwargs
        )
    except (OSError, ValueError) as error:
        raise WeightsError(
            f"BLIP-2 {config.model!r} at revision {config.revision or 'main'} cannot be loaded "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). To fix: allow downloads "
            "(allow_download=True; about 15.5 GB in float32 safetensors), or pass a local folder holding a "
            "Blip2ForConditionalGeneration and its processor (save_pretrained of both)."
        ) from None
    return Captioner(model.to(config.device), processor, name=config.model, revision=config.revision)


# ---- a tiny BLIP-2 built in code ------------------------------------------------------------------------------


def _tiny_gpt2_tokenizer() -> Any:
    """A byte-level BPE tokenizer (OPT's kind) over lower-case letters and the space (``Ġ``), no merges."""
    from transformers import GPT2Tokenizer

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "\u0120": 3}
    for character in "abcdefghijklmnopqrstuvwxyz":
        vocab[character] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="emogen-tiny-blip2-") as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return GPT2Tokenizer.from_pretrained(
            folder, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
        )


def tiny_captioner(seed: int = 0) -> Captioner:
    """A BLIP-2 with tiny vision, Q-Former and OPT parts built from configs (random, seeded weights).

    Its captions are strings of letters that depend on the image, made by the real classes, batched and
    deterministic; images are resized to 32 x 32.
    """
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    tokenizer = _tiny_gpt2_tokenizer()
    processor = Blip2Processor(
        BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=4
    )
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=32,
            patch_size=8,
        ).to_dict(),
        qformer_config=Blip2QFormerConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
            encoder_hidden_size=32, vocab_size=64,
        ).to_dict(),
        text_config=OPTConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, ffn_dim=37, num_attention_heads=4,
            max_position_embeddings=128, word_embed_proj_dim=32, bos_token_id=1, eos_token_id=1, pad_token_id=0,
        ).to_dict(),
        num_query_tokens=4,
        image_token_index=image_token,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():  # at the usual 0.02 init every logit is alike; larger weights make captions vary
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(TINY_WEIGHT_SCALE)
    model.generation_config.eos_token_id = None  # always max_new_tokens tokens: no empty captions
    return Captioner(model, processor, name=TINY_MODEL, revision=None)


# ---- the captions file ----------------------------------------------------------------------------------------


def metadata_path(captions: Path) -> Path:
    """``captions.json`` beside ``captions.jsonl``: who wrote the lines."""
    return captions.with_suffix(".json")


def _parse_lines(data: bytes, path: Path) -> list[CaptionRecord]:
    records = []
    text = decode_text(data, str(path), "captions file", DataError)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            document = loads_json(line, f"{path}, line {number}", "caption record", DataError)
            records.append(CaptionRecord(str(document["id"]), str(document["sha256"]), str(document["caption"])))
        except (DataError, KeyError, TypeError):
            raise DataError(
                f"{path}, line {number}: not a caption record ({line[:60]!r}); delete the file (or that line) "
                "and caption again"
            ) from None
    return records


def read_captions(path: str | Path) -> dict[str, CaptionRecord]:
    """Image id -> its caption record (the last line of an id wins); a torn last line is ignored."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no captions file; write it with baselines.captions.caption_index")
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return {record.id: record for record in _parse_lines(complete, path)}


def _repair_tail(path: Path) -> None:
    """Cut a torn last batch (bytes after the last newline) left by a crash during its write."""
    size = path.stat().st_size
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < size:
        os.truncate(path, end)


def _append(path: Path, records: Sequence[CaptionRecord]) -> None:
    """Append one batch of lines in one write, then fsync."""
    payload = "".join(
        json.dumps({"id": r.id, "sha256": r.sha256, "caption": r.caption}, ensure_ascii=False) + "\n" for r in records
    ).encode("utf-8")
    with open(path, "ab") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _check_metadata(path: Path, config: CaptionConfig, captioner: Captioner | None) -> dict[str, Any]:
    """Write ``captions.json`` for a new file, or check that an existing file came from the same captioner."""
    identity = config.identity()
    if captioner is not None:
        identity.update(model=captioner.name, revision=captioner.revision)
    meta = metadata_path(path)
    if meta.is_file():
        saved = read_json(meta, "captions metadata", DataError)
        if not isinstance(saved, dict) or saved.get("captioner") != identity:
            raise UsageError(
                f"{path} was written by another captioner "
                f"({saved.get('captioner') if isinstance(saved, dict) else saved!r}), not {identity}; "
                "caption with the same settings, or write to another file (out=...)"
            )
        return saved
    if path.exists() and path.stat().st_size:
        raise UsageError(f"{path} exists without {meta.name}; it was not written by caption_index. Move it away")
    document = {"format": CAPTIONS_FORMAT, "version": CAPTIONS_VERSION, "captioner": identity}
    write_json_atomic(meta, document)
    return document


def read_image(root: Path, row: IndexRow) -> tuple[Image.Image, str]:
    """The RGB image of ``row`` and the sha256 of its file; DataError when it is missing, unreadable or changed."""
    path = root / row.path
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as handle:
            image = handle.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"{path}: cannot read the image of index row {row.id!r} ({error}); restore the file") from None
    digest = sha256_bytes(data)
    if row.sha256 and row.sha256 != digest:
        raise DataError(
            f"{path}: the file changed since the index was prepared (sha256 {digest}, index {row.sha256}); "
            "restore it or prepare the index again"
        )
    return image, digest


def caption_batches(rows: Sequence[IndexRow], batch_size: int) -> list[list[IndexRow]]:
    """Fixed consecutive chunks of ``rows`` (a resumed run renders the same batches)."""
    return [list(rows[start : start + batch_size]) for start in range(0, len(rows), batch_size)]


def part_path(out: Path, rank: int) -> Path:
    """Where rank ``rank`` of a data-parallel captioning appends its lines before they are merged into ``out``."""
    return out.with_name(f"{out.name}.rank{rank}")


def part_paths(out: Path) -> list[Path]:
    """Every rank's part file left beside ``out`` (by this run, or by an interrupted one of any process count)."""
    return sorted(out.parent.glob(f"{out.name}.rank*"))


def _merge_parts(out: Path) -> None:
    """Append the part files' records that ``out`` lacks to ``out``, then remove the parts (rank 0 only)."""
    merged = read_captions(out) if out.exists() else {}
    for part in part_paths(out):
        fresh = [record for key, record in read_captions(part).items() if merged.get(key) != record]
        if fresh:
            _append(out, fresh)
            merged.update((record.id, record) for record in fresh)
    for part in part_paths(out):
        part.unlink()


def caption_index(
    index_dir: str | Path,
    emoset_root: str | Path,
    out: str | Path | None = None,
    *,
    config: CaptionConfig = CaptionConfig(),
    captioner: Captioner | Callable[[], Captioner] | None = None,
    ids: Collection[str] | None = None,
    world: World = World(),
    barrier: Callable[[], None] = lambda: None,
) -> CaptionSummary:
    """Caption the index's images (``ids``: only those) into ``out`` (default ``index_dir/captions.jsonl``).

    ``captioner``: a loaded :class:`Captioner`, a function that loads one (called only when some image still
    needs a caption), or None to load ``config.model``. Images already in the file are skipped.

    Data-parallel (``world`` of several ranks, ``barrier`` waiting for all of them): rank 0 checks the file,
    every rank captions every ``world.size``-th of the missing batches into its own part file
    (:func:`part_path`), and rank 0 merges the parts into ``out``; an interrupted run resumes with any process
    count, its parts read as done and merged at the end.
    """
    index_dir, root = Path(index_dir), Path(emoset_root)
    out = Path(out) if out is not None else index_dir / CAPTIONS_FILE
    rows = [row for row in load_index(index_dir) if config.split == "all" or row.split == config.split]
    if ids is not None:
        wanted = set(ids)
        rows = [row for row in rows if row.id in wanted]
    loaded = captioner if isinstance(captioner, Captioner) else None
    if world.is_main:
        _check_metadata(out, config, loaded)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            _repair_tail(out)
    barrier()
    done = read_captions(out) if out.exists() else {}
    for part in part_paths(out):
        done.update(read_captions(part))
    target = part_path(out, world.rank) if world.size > 1 else out
    if target.exists():
        _repair_tail(target)

    def is_done(row: IndexRow) -> bool:
        record = done.get(row.id)
        return record is not None and (not row.sha256 or record.sha256 == row.sha256)

    batches = [batch for batch in caption_batches(rows, config.batch_size) if not all(is_done(r) for r in batch)]
    barrier()  # every rank has the same list of batches before any rank adds to the files
    mine = world.shard(batches)
    captioned = 0
    for batch in progress(mine, desc="captioning", enabled=config.show_progress and world.is_main, unit="batch"):
        if loaded is None:
            loaded = captioner() if callable(captioner) else load_captioner(config)
        pictures, digests = zip(*(read_image(root, row) for row in batch))
        texts = loaded(pictures, max_new_tokens=config.max_new_tokens, num_beams=config.num_beams)
        records = [CaptionRecord(r.id, d, t) for r, d, t in zip(batch, digests, texts) if not is_done(r)]
        _append(target, records)
        captioned += len(records)
    barrier()
    if world.is_main and part_paths(out):
        _merge_parts(out)
    barrier()
    return CaptionSummary(out, captioned, len(rows) - captioned, len(mine))


__all__ = [
    "BLIP2_MODEL",
    "BLIP2_REVISION",
    "CAPTIONS_FILE",
    "CaptionConfig",
    "CaptionRecord",
    "CaptionSummary",
    "Captioner",
    "caption_index",
    "load_captioner",
    "read_captions",
    "tiny_captioner",
]
