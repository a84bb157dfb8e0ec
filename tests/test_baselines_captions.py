"""BLIP-2 captioning of an index (tiny BLIP-2 built from configs) and the caption-finetuned SD baseline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

from baselines.caption_sd import CaptionSD, CaptionStream  # noqa: E402
from baselines.captions import (  # noqa: E402
    CaptionConfig,
    Captioner,
    caption_index,
    load_captioner,
    read_captions,
    tiny_captioner,
)
from baselines.dreambooth import load_weights_into  # noqa: E402
from emogen_bench.data import load_index, prepare_emoset  # noqa: E402
from emogen_bench.errors import UsageError, WeightsError  # noqa: E402
from emogen_bench.submission import read_metadata, validate_submission  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402
from reference.sd import tiny_sd_components  # noqa: E402

TINY = CaptionConfig(model="tiny-blip2", batch_size=5, max_new_tokens=6, show_progress=False)


@pytest.fixture(scope="module")
def captioner() -> Captioner:
    return tiny_captioner(0)


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from fake_emoset import make_fake_emoset

    base = tmp_path_factory.mktemp("captions-emoset")
    make_fake_emoset(base / "emoset", per_split={"train": 2, "val": 0, "test": 0}, edge_cases=False, image_size=16)
    prepare_emoset(base / "emoset", base / "index", show_progress=False)
    return base / "index", base / "emoset"


class Counting:
    """A captioner that records its batch sizes and can crash on a given call."""

    def __init__(self, inner: Captioner, crash_on: int | None = None) -> None:
        self.inner, self.crash_on, self.batches = inner, crash_on, []  # type: ignore[var-annotated]
        self.name, self.revision = inner.name, inner.revision

    def __call__(self, images, **kwargs):  # type: ignore[no-untyped-def]
        if self.crash_on is not None and len(self.batches) + 1 == self.crash_on:
            raise KeyboardInterrupt
        self.batches.append(len(images))
        return self.inner(images, **kwargs)


def _images(count: int) -> list[Image.Image]:
    arrays = [np.random.default_rng(i).integers(0, 256, (20, 30, 3), dtype=np.uint8) for i in range(count)]
    return [Image.fromarray(array) for array in arrays]


def test_tiny_captioner_is_batched_deterministic_and_image_dependent(captioner: Captioner) -> None:
    images = _images(4)
    batched = captioner(images, max_new_tokens=8)
    assert batched == [captioner([image], max_new_tokens=8)[0] for image in images]  # batch = one by one
    assert batched == tiny_captioner(0)(images, max_new_tokens=8)  # a rebuilt model gives the same captions
    assert len(set(batched)) > 1 and all(text for text in batched)


def test_captioning_is_resumable_after_an_interruption(emoset, captioner: Captioner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir, root = emoset
    rows = load_index(index_dir)
    whole = caption_index(index_dir, root, tmp_path / "whole.jsonl", config=TINY, captioner=lambda: Counting(captioner))
    assert (whole.captioned, whole.batches) == (16, 4)

    crashing = Counting(captioner, crash_on=2)
    with pytest.raises(KeyboardInterrupt):
        caption_index(index_dir, root, tmp_path / "split.jsonl", config=TINY, captioner=lambda: crashing)
    assert len((tmp_path / "split.jsonl").read_text().splitlines()) == 5  # the first batch only
    resumed = Counting(captioner)
    summary = caption_index(index_dir, root, tmp_path / "split.jsonl", config=TINY, captioner=lambda: resumed)
    assert resumed.batches == [5, 5, 1] and (summary.captioned, summary.skipped) == (11, 5)
    assert (tmp_path / "split.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()

    records = read_captions(tmp_path / "whole.jsonl")
    assert [json.loads(line)["id"] for line in (tmp_path / "whole.jsonl").read_text().splitlines()] == [
        r.id for r in rows
    ]
    for row in rows:
        assert records[row.id].sha256 == hashlib.sha256((root / row.path).read_bytes()).hexdigest()
    expected = captioner([Image.open(root / rows[7].path).convert("RGB")], max_new_tokens=6)[0]
    assert records[rows[7].id].caption == expected

    def never() -> Captioner:
        raise AssertionError("nothing is left to caption: the model must not be loaded")

    again = caption_index(index_dir, root, tmp_path / "whole.jsonl", config=TINY, captioner=never)
    assert (again.captioned, again.batches) == (0, 0)
    meta = json.loads((tmp_path / "whole.json").read_text())
    assert meta["captioner"]["model"] == "tiny-blip2" and meta["captioner"]["max_new_tokens"] == 6


def test_a_torn_last_batch_is_cut_and_captioned_again(emoset, captioner: Captioner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir, root = emoset
    out = tmp_path / "captions.jsonl"
    with pytest.raises(KeyboardInterrupt):
        caption_index(index_dir, root, out, config=TINY, captioner=lambda: Counting(captioner, crash_on=3))
    good = out.read_bytes()
    out.write_bytes(good + b'{"id": "half a li')
    later = Counting(captioner)
    caption_index(index_dir, root, out, config=TINY, captioner=lambda: later)
    assert later.batches == [5, 1] and out.read_bytes().startswith(good) and len(read_captions(out)) == 16
    with pytest.raises(UsageError, match="another captioner"):
        caption_index(index_dir, root, out, config=CaptionConfig(model="tiny-blip2", max_new_tokens=9))


def test_blip2_is_never_downloaded_unless_allowed() -> None:
    with pytest.raises(WeightsError, match="allow downloads"):
        load_captioner(CaptionConfig())


def test_caption_sd_trains_the_unet_on_emotion_captions_and_generates(emoset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir, root = emoset
    parts = tiny_sd_components(0)
    before = {name: {k: v.clone() for k, v in getattr(parts, name).state_dict().items()}
              for name in ("unet", "vae", "text_encoder")}  # fmt: skip
    captions = tmp_path / "captions.jsonl"
    settings = {"max_steps": 3, "resolution": 32, "learning_rate": 1e-3, "captioner": "tiny-blip2", "cpu": True,
                "captions": str(captions), "show_progress": False, "checkpoint_every": 1}  # fmt: skip
    run = CaptionSD().train(settings, index_dir, root, tmp_path / "run", components=parts)
    records = read_captions(captions)
    assert len(records) == 16 and (tmp_path / "captions.json").is_file()
    for name, state in before.items():
        assert all(torch.equal(state[k], v) for k, v in getattr(parts, name).state_dict().items()), name
    trained = tiny_sd_components(0)
    load_weights_into(trained.unet, run / "unet")
    assert not all(torch.equal(before["unet"][k], v) for k, v in trained.unet.state_dict().items())
    log = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3] and not list(run.glob("checkpoint-*"))

    rows = load_index(index_dir)
    stream = CaptionStream(rows, {r.id: records[r.id].caption for r in rows}, "{emotion}, {caption}",
                           seed=0, balance=True)  # fmt: skip
    example = stream(0)
    assert example.prompt == f"{example.row.emotion}, {records[example.row.id].caption}"
    assert sorted(stream(n).row.id for n in range(16)) == sorted(r.id for r in rows)  # balanced: 2 per emotion

    generate = {"per_emotion": 2, "steps": 1, "guidance": 1.0, "width": 256, "height": 256, "batch_size": 8,
                "show_progress": False}  # fmt: skip
    out = CaptionSD().generate(generate, run, tmp_path / "submission", components=parts)
    report = validate_submission(out, per_emotion=2)
    assert report.valid, report.errors
    notes = json.loads(read_metadata(out / "submission.json").notes.removeprefix("generation settings: "))
    assert notes["prompts"] == {e: e for e in EMOTION_NAMES} and notes["checkpoint"]["baseline"] == "caption-sd"
    with pytest.raises(UsageError, match="resume"):
        CaptionSD().train(settings, index_dir, root, tmp_path / "run", components=parts)
