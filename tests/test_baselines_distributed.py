"""Baseline training under a real ``torchrun`` (2 CPU processes, gloo through accelerate).

DreamBooth used to fail at start-up with 2+ processes: every rank wrote the run
folder's ``selection.json`` and ``config.json`` before accelerate started, so the
others refused the folder.  Now one rank writes, every rank exits 0, and the run
resumes with another process count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torchrun_launch import TORCHRUN, launch

pytest.importorskip("diffusers")

from emogen_bench.data import prepare_emoset  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402

HERE = Path(__file__).parent


def _launch(processes: int, worker: str, *args: str) -> list[dict]:
    return launch(processes, HERE / worker, *args)


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_dreambooth_on_two_processes_writes_once_and_resumes_on_one(tmp_path: Path) -> None:
    from fake_emoset import make_fake_emoset

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 2, "val": 0, "test": 0}, edge_cases=False, image_size=16)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    out = tmp_path / "run"
    args = [str(tmp_path / "index"), str(tmp_path / "emoset"), str(out)]
    ranks = _launch(2, "dreambooth_worker.py", *args, "2")
    assert sorted(r["rank"] for r in ranks) == [0, 1] and {r["run"] for r in ranks} == {str(out)}
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["processes"] == 2 and config["images"] == {e: 2 for e in EMOTION_NAMES}
    for emotion in EMOTION_NAMES:
        steps = [json.loads(line)["step"] for line in (out / emotion / "loss.jsonl").read_text().splitlines()]
        assert steps == [1, 2], emotion  # one writer: each step logged once
        assert (out / emotion / "unet").is_dir() and not list((out / emotion).glob("checkpoint-*"))
    unet = {e: sorted(p.name for p in (out / e / "unet").iterdir()) for e in EMOTION_NAMES}

    resumed = _launch(1, "dreambooth_worker.py", *args, "2", "--resume")  # finished: kept as it is
    assert resumed == [{"rank": 0, "run": str(out)}]
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["processes"] == 1
    assert {e: sorted(p.name for p in (out / e / "unet").iterdir()) for e in EMOTION_NAMES} == unet


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_caption_sd_on_two_processes_shards_the_captions_and_trains_once(tmp_path: Path) -> None:
    from fake_emoset import make_fake_emoset

    from baselines.captions import CaptionConfig, caption_index, part_paths, read_captions, tiny_captioner

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 2, "val": 0, "test": 0}, edge_cases=False, image_size=16)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    captions = tmp_path / "captions.jsonl"
    args = [str(tmp_path / "index"), str(tmp_path / "emoset"), str(tmp_path / "run"), str(captions)]
    ranks = _launch(2, "caption_sd_worker.py", *args, "2")
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    one = CaptionConfig(model="tiny-blip2", batch_size=3, max_new_tokens=30, show_progress=False)
    alone = caption_index(tmp_path / "index", tmp_path / "emoset", tmp_path / "alone.jsonl", config=one,
                          captioner=tiny_captioner(0))  # fmt: skip
    assert alone.captioned == 16
    assert read_captions(captions) == read_captions(tmp_path / "alone.jsonl")  # the same captions, each once
    assert len(captions.read_text().splitlines()) == 16 and part_paths(captions) == []
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["processes"] == 2 and config["images"] == 16
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()] == [1, 2]


def test_parts_left_by_an_interrupted_data_parallel_captioning_count_as_done_and_are_merged(tmp_path: Path) -> None:
    from fake_emoset import make_fake_emoset

    from baselines.captions import CaptionConfig, caption_index, part_path, part_paths, read_captions, tiny_captioner

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 2, "val": 0, "test": 0}, edge_cases=False, image_size=16)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    config = CaptionConfig(model="tiny-blip2", batch_size=4, max_new_tokens=6, show_progress=False)
    whole = tmp_path / "whole.jsonl"
    caption_index(tmp_path / "index", tmp_path / "emoset", whole, config=config, captioner=tiny_captioner(0))
    lines = whole.read_text().splitlines()
    out = tmp_path / "captions.jsonl"
    caption_index(tmp_path / "index", tmp_path / "emoset", out, config=config, captioner=tiny_captioner(0),
                  ids=[json.loads(line)["id"] for line in lines[:4]])  # fmt: skip
    part_path(out, 1).write_text("\n".join(lines[4:12]) + "\n" + lines[12][:10])  # rank 1 of 2 died mid-write
    calls: list[int] = []
    captioner = tiny_captioner(0)

    def counting(pictures, **options):  # type: ignore[no-untyped-def]
        calls.append(len(pictures))
        return captioner(pictures, **options)

    summary = caption_index(tmp_path / "index", tmp_path / "emoset", out, config=config, captioner=lambda: counting)
    assert summary.captioned == 4 and sum(calls) == 4  # the rows of lines 12-15: the torn line is captioned again
    assert read_captions(out) == read_captions(whole) and part_paths(out) == []


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # torchrun with two processes: CI runs it (.ci/run), `pytest -m slow` here
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (part of torch) is not on PATH")
def test_sharded_generation_gives_the_one_process_folder_byte_for_byte(tmp_path: Path) -> None:
    options = ["baseline", "sd", "generate", "--tiny", "--per-emotion", "2", "--steps", "1", "--size", "256",
               "--batch-size", "3", "--device", "cpu", "--quiet"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "emogen_bench", *options, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=environment, timeout=600, check=False)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "emogen_bench", *options,
         "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=environment, timeout=600, check=False,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[:3000]  # a rank's own message comes before torchrun's summary
    assert two.stdout.count("submission:") == 1  # rank 0 reports once every rank is done
    by_hand = tmp_path / "by-hand"
    for k in (1, 0):  # --shard K/N by hand, in any order, into one folder
        done = subprocess.run([sys.executable, "-m", "emogen_bench", *options, "--out", str(by_hand),
                               "--shard", f"{k}/2"], capture_output=True, text=True, env=environment, timeout=600,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    reference = _tree(tmp_path / "one")
    assert len([name for name in reference if name.endswith(".png")]) == 16
    assert _tree(tmp_path / "two") == reference and _tree(by_hand) == reference
