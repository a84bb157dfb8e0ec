"""Feeding the models without waiting: chunk outputs joined on the device, cache writes in a background thread,
``num_workers="auto"``, and the loader's shared-memory use bounded by /dev/shm's free space."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline import GROUPS, ToyExtractor, assert_same_features, make_items, toy_set

from emogen_bench.cache import FeatureCache
from emogen_bench.cli import build_parser, main
from emogen_bench.config import (
    CPU_WORKERS,
    MAX_AUTO_WORKERS,
    EvalConfig,
    auto_num_workers,
    check_num_workers,
    resolve_num_workers,
)
from emogen_bench.errors import DataError, UsageError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor, run_fixed_batches
from emogen_bench.pipeline import (
    HELD_BATCHES,
    ExtractionResult,
    ImageItem,
    _CacheWriter,
    _fit_loader,
    _ImageDataset,
    _Work,
    extract,
    fit_shared_memory,
    lpips_summary_key,
)
from emogen_bench.task import METRICS

MIB = 2**20


# --- run_fixed_batches: one copy back per call --------------------------------------------------


def old_run_fixed_batches(forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], batch: torch.Tensor,
                          size: int) -> dict[str, np.ndarray]:
    """git 4069a9e's run_fixed_batches: each chunk's outputs copied to numpy, then concatenated."""
    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, batch.shape[0], size):
        chunk = batch[start : start + size]
        real = chunk.shape[0]
        if real < size:
            chunk = torch.cat([chunk, torch.zeros((size - real, *chunk.shape[1:]), dtype=chunk.dtype)])
        for name, value in forward(chunk).items():
            pieces.setdefault(name, []).append(value[:real].detach().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in pieces.items()}


class Plain(ToyExtractor):
    """The toy network with the base class's call (the test extractor's counting call takes no options)."""

    __call__ = FeatureExtractor.__call__


@pytest.mark.parametrize("n", [1, 15, 16, 17, 40])
def test_chunks_joined_on_the_device_are_bitwise_the_per_chunk_copies(n: int) -> None:
    model = Plain("a", dim=5, seed=3)
    x = torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        want = old_run_fixed_batches(model.forward, x, METRICS.model_batch)
        got = run_fixed_batches(model.forward, x)
        tensors = run_fixed_batches(model.forward, x, as_tensors=True)
    assert got.keys() == want.keys() == tensors.keys()
    for name in want:
        assert isinstance(got[name], np.ndarray) and got[name].dtype == want[name].dtype
        assert np.array_equal(got[name], want[name])
        assert isinstance(tensors[name], torch.Tensor) and torch.equal(tensors[name], torch.from_numpy(want[name]))
    called = model(x, as_tensors=True)
    assert all(torch.equal(called[name], tensors[name]) for name in want)


# --- cache writes in a background thread ---------------------------------------------------------


class SlowDisk(FeatureCache):
    """A real feature cache on a slow disk: every write takes a while, so queued writes are still queued when the
    pass fails, unless the pass waits for them."""

    def put_many(self, info: ExtractorInfo, outputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        time.sleep(0.25)
        super().put_many(info, outputs)


class BrokenDisk(FeatureCache):
    """A feature cache whose writes fail with an error of a kind the cache does not expect."""

    def put_many(self, info: ExtractorInfo, outputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        raise RuntimeError(f"the disk under {self.root} caught fire")


class CtrlC(ToyExtractor):
    """Ctrl-C pressed while this extractor runs its ``at``-th call."""

    def __init__(self, at: int, **options: Any) -> None:
        super().__init__(**options)
        self.at = at

    def __call__(self, batch: torch.Tensor, **options: Any) -> dict[str, np.ndarray]:
        if self.calls + 1 == self.at:
            raise KeyboardInterrupt
        return super().__call__(batch, **options)


def pass_over(items: list[ImageItem], cache: FeatureCache, **options: Any) -> ExtractionResult:
    options = {"batch_size": 4, "device": "cpu", "show_progress": False, "lpips_groups": GROUPS, **options}
    return extract(items, options.pop("extractors", toy_set()), cache=cache, **options)


def cached_rows(cache: FeatureCache, items: list[ImageItem], name: str) -> list[int]:
    """Canonical positions of the items whose ``name`` features the cache holds."""
    info = toy_set()[name].info
    found = cache.get_many(info, [item.sha256 for item in items])
    return [position for position, item in enumerate(items) if item.sha256 in found]


def test_results_and_cache_entries_are_the_same_with_and_without_the_writer_thread(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images")
    threaded = pass_over(items, FeatureCache(tmp_path / "threaded"), num_workers=2)
    inline = pass_over(items, FeatureCache(tmp_path / "inline"), background_writes=False)
    assert_same_features(threaded, inline)
    for name in ("a", "b"):
        info = toy_set()[name].info
        left = FeatureCache(tmp_path / "threaded").get_many(info, [i.sha256 for i in items])
        right = FeatureCache(tmp_path / "inline").get_many(info, [i.sha256 for i in items])
        assert left.keys() == right.keys() == {i.sha256 for i in items}
        for sha, outputs in left.items():
            assert all(np.array_equal(outputs[out], right[sha][out]) for out in outputs)
    lpips = toy_set()["lpips"].info
    for emotion in ("amusement", "awe", "fear"):
        key = lpips_summary_key(lpips, [i.sha256 for i in items if i.emotion == emotion], GROUPS)
        threaded_summary = FeatureCache(tmp_path / "threaded").get_summary(key)
        assert threaded_summary is not None and threaded_summary == FeatureCache(tmp_path / "inline").get_summary(key)
    warm = pass_over(items, FeatureCache(tmp_path / "threaded"))
    assert warm.decoded == 0 and all(c["computed"] == 0 for c in warm.counts.values())


def test_a_failing_image_in_the_middle_leaves_the_earlier_batches_cached(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images")  # 21 images; the one at position 18 is replaced after listing
    Image.new("RGB", (9, 9), (1, 2, 3)).save(items[18].path, format="PNG")
    cache = SlowDisk(tmp_path / "cache")
    with pytest.raises(DataError, match="changed after it was listed") as raised:
        pass_over(items, cache)
    assert str(items[18].path) in str(raised.value)
    first_model_batch = list(range(METRICS.model_batch))  # written before the loader reached position 18
    assert cached_rows(cache, items, "a") == first_model_batch
    assert cached_rows(cache, items, "b") == first_model_batch
    amusement = [i.sha256 for i in items if i.emotion == "amusement"]  # positions 0-6: its summary was written
    assert cache.get_summary(lpips_summary_key(toy_set()["lpips"].info, amusement, GROUPS)) is not None


def test_ctrl_c_waits_for_the_queued_writes(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images")
    extractors = {**toy_set(), "b": CtrlC(at=2, name="b", dim=3, seed=2)}
    cache = SlowDisk(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        pass_over(items, cache, extractors=extractors, batch_size=16)
    assert cached_rows(cache, items, "a") == list(range(len(items)))  # "a" runs before "b" on the last batch too
    assert cached_rows(cache, items, "b") == list(range(METRICS.model_batch))  # Ctrl-C on b's second model batch


def test_an_error_in_the_writer_is_raised_in_the_main_thread_with_its_message(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images", per_emotion=3)
    with pytest.raises(RuntimeError, match=r"the disk under .*broken caught fire"):
        pass_over(items, BrokenDisk(tmp_path / "broken"))


def test_the_writer_keeps_order_skips_after_an_error_and_raises_it_once() -> None:
    done: list[int] = []

    def write(k: int) -> None:
        if k == 3:
            raise OSError(f"write {k} failed")
        done.append(k)

    raised: list[str] = []
    writer = _CacheWriter(depth=2)
    for k in range(6):
        try:
            writer.submit(write, k)
        except OSError as error:  # at a later hand-over, if the writer got there first
            raised.append(str(error))
    try:
        writer.close()
    except OSError as error:  # else when the pass ends
        raised.append(str(error))
    writer.close()
    assert raised == ["write 3 failed"] and done == [0, 1, 2]


# --- num_workers="auto" --------------------------------------------------------------------------


def test_auto_workers_are_the_available_cores_but_one_on_cuda_and_two_on_the_cpu() -> None:
    assert [auto_num_workers("cuda", cores) for cores in (1, 2, 8, 17, 64)] == [1, 1, 7, 16, 16]
    assert [auto_num_workers(kind, 64) for kind in ("cpu", "mps")] == [CPU_WORKERS, CPU_WORKERS] == [2, 2]
    assert [auto_num_workers("cpu", cores) for cores in (1, 2, 3)] == [0, 0, 2]  # 2 cores: the models need both
    cores = len(os.sched_getaffinity(0))
    assert resolve_num_workers("auto", "cuda") == max(1, min(MAX_AUTO_WORKERS, cores - 1))
    assert resolve_num_workers("auto", "cpu") == (0 if cores <= 2 else 2) and resolve_num_workers(5, "cuda") == 5
    assert EvalConfig().num_workers == "auto"
    assert EvalConfig(device="cpu").to_dict()["num_workers"] == (0 if cores <= 2 else 2)  # the number used
    assert EvalConfig(device="cuda").to_dict()["num_workers"] == max(1, min(MAX_AUTO_WORKERS, cores - 1))
    assert EvalConfig(device="cpu", num_workers=3).to_dict()["num_workers"] == 3


@pytest.mark.parametrize("bad", [-1, "many", True, 2.0, None])
def test_bad_worker_counts_are_usage_errors(bad: object) -> None:
    with pytest.raises(UsageError, match="must be auto or an integer of at least 0"):
        check_num_workers(bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers"):
        EvalConfig(num_workers=bad)  # type: ignore[arg-type]


def test_the_command_line_takes_num_workers_auto_or_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["evaluate", "x"]).workers == "auto"
    assert parser.parse_args(["evaluate", "x", "--num-workers", "auto"]).workers == "auto"
    assert parser.parse_args(["evaluate", "x", "--num-workers", "0"]).workers == 0
    assert parser.parse_args(["evaluate", "x", "--workers", "3"]).workers == 3  # the older name still works
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "x", "--num-workers", "-2"])
    assert exited.value.code == 2
    assert "--num-workers/--workers: expected auto or a whole number of at least 0, got '-2'" in capsys.readouterr().err


def test_an_auto_pass_on_the_cpu_gives_the_same_features(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images", per_emotion=3)
    auto = pass_over(items, FeatureCache(tmp_path / "x", enabled=False), num_workers="auto")
    serial = pass_over(items, FeatureCache(tmp_path / "y", enabled=False), num_workers=0)
    assert_same_features(auto, serial)


# --- shared memory -------------------------------------------------------------------------------


def test_the_loader_batch_is_lowered_to_fit_shared_memory() -> None:
    image = 6 * MIB
    slots = 2 * 2 + HELD_BATCHES  # two workers with two batches each ahead, plus those the main process holds
    assert fit_shared_memory(32, 2, image, 2048 * MIB) == (32, 2)  # 6 x 32 x 6 MiB = 1152 MiB fit
    assert fit_shared_memory(32, 2, image, 300 * MIB) == (300 // (slots * 6), 2) == (8, 2)
    assert fit_shared_memory(32, 2, image, 64 * MIB) == (1, 2)  # Docker's default /dev/shm: one image per batch
    assert fit_shared_memory(32, 0, image, 0) == (32, 0)  # no workers: no shared memory


def test_auto_workers_are_lowered_when_one_image_per_batch_does_not_fit() -> None:
    # 15 workers: (15 x 2 + 2) x 6 MiB = 192 MiB > 64 MiB; 4 workers: 10 x 6 = 60 MiB fit
    assert fit_shared_memory(32, 15, 6 * MIB, 64 * MIB, auto_workers=True) == (1, 4)


def test_too_little_shared_memory_for_one_image_is_a_usage_error_naming_the_way_out() -> None:
    with pytest.raises(UsageError) as raised:
        fit_shared_memory(32, 15, 6 * MIB, 64 * MIB)
    message = str(raised.value)
    assert message.startswith("/dev/shm has 64.0 MiB free, but 15 data-loader worker(s) need 192.0 MiB")
    assert "--num-workers 0" in message and "--shm-size" in message
    with pytest.raises(UsageError, match="/dev/shm has 20.0 MiB free"):
        fit_shared_memory(32, 1, 6 * MIB, 20 * MIB, auto_workers=True)  # even one worker does not fit


def test_the_first_image_measures_what_a_worker_hands_over_and_is_not_read_twice(tmp_path: Path) -> None:
    items = make_items(tmp_path / "images", per_emotion=2)
    models = toy_set()
    work = [_Work(p, item.path, item.sha256, ("a", "lpips")) for p, item in enumerate(items)]
    dataset = _ImageDataset(work, {name: models[name].preprocessor for name in ("a", "lpips")})
    batch, workers, first = _fit_loader(dataset, 32, 2, auto_workers=False)
    assert first is not None and first[0] == 0
    want = dataset[0][1]
    assert all(torch.equal(first[1][name], want[name]) for name in want)  # type: ignore[index]
    per_image = sum(t.numel() * t.element_size() for t in want.values())  # type: ignore[union-attr]
    stats = os.statvfs("/dev/shm")
    assert (batch, workers) == fit_shared_memory(32, 2, per_image, stats.f_bavail * stats.f_frsize)
    assert _fit_loader(dataset, 32, 0, auto_workers=False) == (32, 0, None)  # no workers: nothing read here


def test_auto_workers_share_the_node_between_the_ranks_a_launcher_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from emogen_bench.config import available_cores, cores_per_process

    cores = available_cores()
    whole_machine = cores == (os.cpu_count() or cores)
    assert cores_per_process({}) == cores
    for ranks in (2, 8, 64):
        expected = max(1, cores // ranks) if whole_machine else cores
        assert cores_per_process({"LOCAL_WORLD_SIZE": str(ranks)}) == expected
    assert cores_per_process({"LOCAL_WORLD_SIZE": "zero"}) == cores_per_process({"LOCAL_WORLD_SIZE": "0"}) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert resolve_num_workers("auto", "cuda") == auto_num_workers("cuda", cores_per_process()) == 1
    assert auto_num_workers("cuda", 16 // 8) == 1 and auto_num_workers("cuda", 16 // 2) == 7
