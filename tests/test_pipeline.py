"""The one-pass pipeline: each image decoded once, each model once per image, results independent of
loader settings and item order, resumable through the cache, LPIPS equal to brute-force all pairs."""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tolerances import U32, gamma, network_bound
from torch import nn

from emogen_bench import pipeline
from emogen_bench.cache import FeatureCache
from emogen_bench.errors import DataError, ExitCode, InvalidInputError, UsageError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.hashing import sha256_file
from emogen_bench.pipeline import (
    ExtractionResult,
    ImageItem,
    canonical_key,
    decode_image,
    extract,
    items_from_report,
    lpips_summary_key,
    resolve_device,
)
from emogen_bench.task import EMOTION_IDS

EMOTIONS = ("amusement", "awe", "fear")
PER_EMOTION = 7
GROUPS = 3


class Interrupted(RuntimeError):
    """Raised by a toy extractor to simulate a crash or Ctrl-C in the middle of a run."""


class ToyExtractor(FeatureExtractor):
    """A deterministic tiny conv net: image -> 8x8 -> conv -> a vector and a scalar.

    Counts the images it is called on (in the main process, where models run)
    and can fail on its ``fail_on_call``-th call.
    """

    def __init__(self, name: str = "toy", dim: int = 6, seed: int = 0, fail_on_call: int | None = None) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, kernel_size=3)
        self.linear = nn.Linear(4 * 6 * 6, dim)
        with torch.no_grad():
            for parameter in (*self.conv.parameters(), *self.linear.parameters()):
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        self.info = ExtractorInfo(name, self.declared_outputs(dim), "toy-1", {"toy": f"smoke:{seed}"}, smoke=True)
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.images_seen = 0

    def declared_outputs(self, dim: int) -> dict[str, tuple[int, ...]]:
        return {"vec": (dim,), "score": ()}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None]
        return nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)[0]

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(batch)).flatten(1)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        vec = self.linear(self.features(batch))
        return {"vec": vec, "score": vec.square().sum(1)}

    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise Interrupted(f"{self.info.name} interrupted on call {self.calls}")
        self.images_seen += batch.shape[0]
        return super().__call__(batch)


class ToyLpips(ToyExtractor):
    """An LPIPS stand-in: per-image ``phi`` features, too big to cache (so never cached)."""

    def __init__(self, seed: int = 1, fail_on_call: int | None = None) -> None:
        super().__init__("lpips", seed=seed, fail_on_call=fail_on_call)
        self.info = ExtractorInfo("lpips", {"phi": (4 * 6 * 6,)}, "toy-1", {"toy": f"smoke:{seed}"}, cacheable=False)

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"phi": 0.1 * self.features(batch)}


def toy_error_bounds(model: ToyExtractor, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per output, |any two float32 evaluations| of ``model`` on inputs ``x`` (batched or alone, any CPU).

    ``network_bound``: each evaluation of conv -> ReLU (-> linear) is within ``gamma_K |W| ... |x|`` of the exact
    value, so two are within twice that; ``score = sum vec^2``: ``|v^2 - v'^2| <= |v - v'| (2 |v| + |v - v'|)``
    plus each side's ``gamma_{d+1}`` on its sum of squares.
    """
    vec, unit = network_bound([model.conv, nn.ReLU(), nn.Flatten(), model.linear], x, per_image=True)
    vec_error = 2 * unit * vec
    size = (1 + unit) * vec  # bounds |vec| on either side
    score = (vec_error * (2 * size + vec_error)).sum(axis=1) + 2 * gamma(vec.shape[1] + 1, U32) * (size**2).sum(axis=1)
    return {"vec": vec_error, "score": score}


def toy_set(**fail_on_call: int) -> dict[str, FeatureExtractor]:
    """Two cacheable toy extractors and the LPIPS stand-in; ``name=k`` makes ``name`` fail on call k."""
    return {
        "a": ToyExtractor("a", dim=6, seed=0, fail_on_call=fail_on_call.get("a")),
        "b": ToyExtractor("b", dim=3, seed=2, fail_on_call=fail_on_call.get("b")),
        "lpips": ToyLpips(fail_on_call=fail_on_call.get("lpips")),
    }


def _write_image(path: Path, rng: np.random.Generator, k: int) -> None:
    """Varied files: PNG of several sizes, a grayscale PNG, a JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = (20, 24) if k % 2 else (17, 31)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if k == 2:
        Image.fromarray(pixels[..., 0], mode="L").save(path, format="PNG")
    elif k == 4:
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    else:
        Image.fromarray(pixels).save(path, format="PNG")


def make_items(
    root: Path, per_emotion: int = PER_EMOTION, emotions: Sequence[str] = EMOTIONS, seed: int = 0
) -> list[ImageItem]:
    """Write ``per_emotion`` images per emotion under ``root/<emotion>/`` and return their items (canonical order)."""
    rng = np.random.default_rng(seed)
    items = []
    for emotion in emotions:
        for k in range(per_emotion):
            relpath = f"{emotion}/{k:03d}.png"
            path = root / relpath
            if not path.exists():
                _write_image(path, rng, k)
            items.append(ImageItem(path, relpath, sha256_file(path), emotion))
    return sorted(items, key=canonical_key)


@pytest.fixture
def items(tmp_path: Path) -> list[ImageItem]:
    return make_items(tmp_path / "images")


@pytest.fixture
def decode_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Count every image read+decode, also inside forked data-loader workers (through a file)."""
    log = tmp_path / "decodes.log"
    log.touch()
    real = pipeline.read_image

    def counted(path: Path, sha256: str, source: pipeline.ImageSource = "emoset") -> np.ndarray:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{path}\n")
        return real(path, sha256, source)

    monkeypatch.setattr(pipeline, "read_image", counted)

    def read() -> list[str]:
        return log.read_text(encoding="utf-8").splitlines()

    return read


def run(items: Sequence[ImageItem], extractors: Mapping[str, FeatureExtractor], cache: FeatureCache, *,
        batch_size: int = 4, num_workers: int = 0) -> ExtractionResult:
    return extract(items, extractors, cache=cache, batch_size=batch_size, num_workers=num_workers, device="cpu",
                   show_progress=False, lpips_groups=GROUPS)


def assert_same_features(left: ExtractionResult, right: ExtractionResult) -> None:
    assert left.features.keys() == right.features.keys()
    for name, outputs in left.features.items():
        assert outputs.keys() == right.features[name].keys()
        for output, array in outputs.items():
            np.testing.assert_array_equal(array, right.features[name][output], err_msg=f"{name}.{output}")
    assert left.lpips == right.lpips


def no_cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "unused", enabled=False)


# --- one pass ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_each_image_is_decoded_once_and_each_model_runs_once_per_image(
    items: list[ImageItem], tmp_path: Path, decode_log: Callable[[], list[str]], num_workers: int
) -> None:
    extractors = toy_set()
    result = run(items, extractors, no_cache(tmp_path), batch_size=5, num_workers=num_workers)
    decodes = Counter(decode_log())
    assert decodes == Counter(str(item.path) for item in items)
    assert result.decoded == len(items)
    for name, extractor in extractors.items():
        assert extractor.images_seen == len(items), name
        assert result.counts[name] == {"computed": len(items), "cached": 0}
    assert set(result.features) == {"a", "b"}
    assert result.features["a"]["vec"].shape == (len(items), 6)
    assert result.features["b"]["score"].shape == (len(items),)
    assert set(result.lpips) == set(EMOTIONS)
    assert {"total", "loader_wait", "model.a", "model.b", "model.lpips"} <= set(result.timings)


def test_features_are_those_of_the_model_on_each_image(items: list[ImageItem], tmp_path: Path) -> None:
    extractors = toy_set()
    result = run(items, extractors, no_cache(tmp_path))
    for name in ("a", "b"):
        model = extractors[name]
        with torch.no_grad():
            for row, item in enumerate(items):
                inputs = model.preprocess(decode_image(item.path.read_bytes()))[None]
                alone = model.forward(inputs)
                bounds = toy_error_bounds(model, inputs)  # batched vs alone: float32 rounding, any CPU
                for output, value in alone.items():
                    got = result.features[name][output][row]
                    np.testing.assert_array_less(np.abs(got - value[0].numpy()), bounds[output][0])


def test_features_do_not_depend_on_batch_size_workers_or_item_order(items: list[ImageItem], tmp_path: Path) -> None:
    baseline = run(items, toy_set(), no_cache(tmp_path), batch_size=1, num_workers=0)
    for batch_size, num_workers in [(3, 0), (16, 0), (1, 2), (3, 2), (16, 2)]:
        other = run(items, toy_set(), no_cache(tmp_path), batch_size=batch_size, num_workers=num_workers)
        assert_same_features(baseline, other)
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    assert shuffled != items
    reordered = run(shuffled, toy_set(), no_cache(tmp_path), batch_size=3, num_workers=2)
    row_of = {item.relpath: row for row, item in enumerate(items)}
    for name, outputs in baseline.features.items():
        for output, array in outputs.items():
            expected = array[[row_of[item.relpath] for item in shuffled]]
            np.testing.assert_array_equal(reordered.features[name][output], expected)
    assert reordered.lpips == baseline.lpips


def test_identical_files_are_computed_once_but_count_as_separate_images(tmp_path: Path,
                                                                         decode_log: Callable[[], list[str]]) -> None:
    items = make_items(tmp_path / "images", per_emotion=3)
    twin = tmp_path / "images" / "fear" / "twin.png"
    twin.write_bytes(items[0].path.read_bytes())
    with_twin = sorted([*items, ImageItem(twin, "fear/twin.png", items[0].sha256, "fear")], key=canonical_key)
    extractors = {name: ex for name, ex in toy_set().items() if name != "lpips"}
    result = run(with_twin, extractors, no_cache(tmp_path))
    assert len(decode_log()) == len(items)
    assert extractors["a"].images_seen == len(items)
    rows = [row for row, item in enumerate(with_twin) if item.sha256 == items[0].sha256]
    assert len(rows) == 2
    np.testing.assert_array_equal(result.features["a"]["vec"][rows[0]], result.features["a"]["vec"][rows[1]])
    with_lpips = run(with_twin, toy_set(), no_cache(tmp_path))
    assert with_lpips.lpips["fear"].n == 4


# --- LPIPS ---------------------------------------------------------------------------------------


def brute_force_pair_mean(rows: np.ndarray) -> float:
    pairs = list(itertools.combinations(range(len(rows)), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([np.sum((rows[i] - rows[j]) ** 2) for i, j in pairs]))


def test_lpips_summaries_equal_brute_force_all_pairs(items: list[ImageItem], tmp_path: Path) -> None:
    extractors = toy_set()
    result = run(items, extractors, no_cache(tmp_path), batch_size=5, num_workers=2)
    lpips = extractors["lpips"]
    inputs = torch.stack([lpips.preprocess(decode_image(item.path.read_bytes())) for item in items])
    phi = FeatureExtractor.__call__(lpips, inputs)["phi"].astype(np.float64)
    for emotion in EMOTIONS:
        rows = phi[[i for i, item in enumerate(items) if item.emotion == emotion]]
        summary = result.lpips[emotion]
        assert summary.n == len(rows) == PER_EMOTION
        np.testing.assert_allclose(summary.mean, brute_force_pair_mean(rows), rtol=1e-10)
        assert summary.loo.shape == (GROUPS,)
        for group in range(GROUPS):
            kept = rows[[k for k in range(len(rows)) if k % GROUPS != group]]
            np.testing.assert_allclose(summary.loo[group], brute_force_pair_mean(kept), rtol=1e-10)


def test_lpips_summaries_are_cached_per_emotion(items: list[ImageItem], tmp_path: Path,
                                                decode_log: Callable[[], list[str]]) -> None:
    cache = FeatureCache(tmp_path / "cache")
    first = run(items, {"lpips": ToyLpips()}, cache)
    lpips = ToyLpips()
    second = run(items, {"lpips": lpips}, cache)
    assert second.lpips == first.lpips
    assert lpips.images_seen == 0 and second.decoded == 0
    assert second.counts["lpips"] == {"computed": 0, "cached": len(items)}
    assert len(decode_log()) == len(items)
    other_groups = extract(items, {"lpips": ToyLpips()}, cache=cache, device="cpu", show_progress=False, lpips_groups=2)
    assert other_groups.counts["lpips"]["computed"] == len(items)
    assert other_groups.lpips["awe"].loo.shape == (2,)


# --- cache: warm runs, new images, interruptions, damage -------------------------------------------


def test_a_warm_run_computes_nothing_and_returns_identical_arrays(items: list[ImageItem], tmp_path: Path,
                                                                  decode_log: Callable[[], list[str]]) -> None:
    cache = FeatureCache(tmp_path / "cache")
    cold = run(items, toy_set(), cache, num_workers=2)
    assert len(decode_log()) == len(items)
    extractors = toy_set()
    warm = run(items, extractors, cache, num_workers=2)
    assert len(decode_log()) == len(items)  # nothing read again
    assert warm.decoded == 0
    for name, extractor in extractors.items():
        assert extractor.calls == 0, name
        assert warm.counts[name] == {"computed": 0, "cached": len(items)}
    assert_same_features(cold, warm)
    uncached = run(items, toy_set(), no_cache(tmp_path), batch_size=16)
    assert_same_features(cold, uncached)


def test_adding_images_computes_only_the_new_ones(tmp_path: Path, decode_log: Callable[[], list[str]]) -> None:
    cache = FeatureCache(tmp_path / "cache")
    everything = make_items(tmp_path / "images")
    first = [item for item in everything if int(item.relpath[-7:-4]) < 4]
    run(first, {n: e for n, e in toy_set().items() if n != "lpips"}, cache)
    decoded_before = len(decode_log())
    extractors = {n: e for n, e in toy_set().items() if n != "lpips"}
    grown = run(everything, extractors, cache)
    new = len(everything) - len(first)
    assert len(decode_log()) - decoded_before == new
    assert grown.counts["a"] == {"computed": new, "cached": len(first)}
    assert extractors["b"].images_seen == new
    uncached = run(everything, {n: e for n, e in toy_set().items() if n != "lpips"}, no_cache(tmp_path))
    assert_same_features(grown, uncached)


def test_adding_images_to_one_emotion_recomputes_only_its_lpips(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    everything = make_items(tmp_path / "images")
    first = [item for item in everything if item.emotion != "awe" or int(item.relpath[-7:-4]) < 4]
    before = run(first, toy_set(), cache)
    extractors = toy_set()
    grown = run(everything, extractors, cache)
    assert grown.counts["lpips"] == {"computed": PER_EMOTION, "cached": 2 * PER_EMOTION}
    assert grown.decoded == PER_EMOTION
    assert grown.counts["a"] == {"computed": len(everything) - len(first), "cached": len(first)}
    assert grown.lpips["amusement"] == before.lpips["amusement"] and grown.lpips["fear"] == before.lpips["fear"]
    assert grown.lpips["awe"].n == PER_EMOTION


def test_an_interrupted_run_resumes_recomputing_only_what_was_not_cached(items: list[ImageItem], tmp_path: Path,
                                                                         decode_log: Callable[[], list[str]]) -> None:
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(Interrupted):
        run(items, toy_set(b=2), cache, batch_size=16)
    shas = [item.sha256 for item in items]
    probe = toy_set()
    cached_before = {name: len(cache.get_many(probe[name].info, shas)) for name in ("a", "b")}
    assert 0 < cached_before["b"] < len(items)  # some of b's work was saved before the failure
    lpips_done = {
        emotion for emotion in EMOTIONS
        if cache.get_summary(lpips_summary_key(probe["lpips"].info,
                                               [i.sha256 for i in items if i.emotion == emotion], GROUPS))
    }
    decoded_before = len(decode_log())

    resumed_extractors = toy_set()
    resumed = run(items, resumed_extractors, cache, batch_size=16)
    for name in ("a", "b"):
        assert resumed.counts[name] == {"computed": len(items) - cached_before[name], "cached": cached_before[name]}
        assert resumed_extractors[name].images_seen == len(items) - cached_before[name]
    lpips_cached = sum(PER_EMOTION for _ in lpips_done)
    assert resumed.counts["lpips"] == {"computed": len(items) - lpips_cached, "cached": lpips_cached}
    needed = {i.path for i in items if i.emotion not in lpips_done}
    needed |= {i.path for i in items if not cache.get_many(probe["b"].info, [i.sha256]) or i.emotion not in lpips_done}
    assert len(decode_log()) - decoded_before == resumed.decoded
    assert set(decode_log()[decoded_before:]) <= {str(p) for p in needed}

    fresh = run(items, toy_set(), FeatureCache(tmp_path / "fresh"), batch_size=16)
    assert_same_features(resumed, fresh)


def test_damaged_cache_entries_are_recomputed(items: list[ImageItem], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    cold = run(items, toy_set(), cache)
    probe = toy_set()
    cache.item_path(probe["a"].info, items[3].sha256).write_bytes(b"garbage")
    cache.item_path(probe["b"].info, items[5].sha256).write_bytes(b"")
    awe = [i.sha256 for i in items if i.emotion == "awe"]
    cache.summary_path(lpips_summary_key(probe["lpips"].info, awe, GROUPS)).write_text("{", encoding="utf-8")
    again = run(items, probe, cache)
    assert again.counts["a"] == {"computed": 1, "cached": len(items) - 1}
    assert again.counts["b"] == {"computed": 1, "cached": len(items) - 1}
    assert again.counts["lpips"] == {"computed": PER_EMOTION, "cached": len(items) - PER_EMOTION}
    assert_same_features(cold, again)
    assert len(run(items, toy_set(), cache).lpips) == len(EMOTIONS)  # repaired: nothing computed now
    assert all(v["computed"] == 0 for v in run(items, toy_set(), cache).counts.values())


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_file_changed_after_listing_is_an_error_naming_it(items: list[ImageItem], tmp_path: Path,
                                                            num_workers: int) -> None:
    changed = items[4]
    Image.new("RGB", (9, 9), (1, 2, 3)).save(changed.path, format="PNG")
    with pytest.raises(DataError, match="changed after it was listed") as raised:
        run(items, toy_set(), no_cache(tmp_path), num_workers=num_workers)
    assert str(changed.path) in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_missing_and_undecodable_files_are_errors_naming_them(items: list[ImageItem], tmp_path: Path) -> None:
    items[2].path.unlink()
    with pytest.raises(DataError, match="is missing") as raised:
        run(items, toy_set(), no_cache(tmp_path))
    assert str(items[2].path) in str(raised.value)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    item = ImageItem(broken, "awe/broken.png", sha256_file(broken), "awe")
    with pytest.raises(DataError, match="cannot be decoded") as raised:
        run([item], toy_set(), no_cache(tmp_path))
    assert str(broken) in str(raised.value)


def _validated_items(root: Path) -> list[ImageItem]:
    """The items of a real validated submission (the synthetic example, 2 images per emotion)."""
    from emogen_bench.submission import validate_submission, write_example_submission

    write_example_submission(root, per_emotion=2, size=256)
    return items_from_report(validate_submission(root, per_emotion=2, show_progress=False))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_submission_image_changed_after_validation_is_invalid_input(tmp_path: Path, num_workers: int) -> None:
    items = [item for item in _validated_items(tmp_path / "sub") if item.emotion in EMOTIONS]
    assert {item.source for item in items} == {"submission"}
    changed = items[3]
    Image.new("RGB", (9, 9), (1, 2, 3)).save(changed.path, format="PNG")
    with pytest.raises(InvalidInputError, match="changed after validation") as raised:
        run(items, toy_set(), no_cache(tmp_path), num_workers=num_workers)
    assert str(changed.path) in str(raised.value) and "Validate the submission again" in str(raised.value)
    assert raised.value.exit_code == ExitCode.INVALID


def _read_guarded(path: Path, sha256: str, source: pipeline.ImageSource) -> BaseException | None:
    """What ``read_image`` raises, from a thread joined with a guard: reading a FIFO must not block forever."""
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            pipeline.read_image(path, sha256, source)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)  # a guard against blocking forever, not a timing test
    assert outcome, f"reading {path} blocked"
    return outcome[0]


@pytest.mark.parametrize(
    ("source", "error", "exit_code"),
    [("submission", InvalidInputError, ExitCode.INVALID), ("emoset", DataError, ExitCode.DATA)],
)
def test_files_gone_bad_after_listing_are_errors_of_their_source(
    tmp_path: Path, source: pipeline.ImageSource, error: type[Exception], exit_code: ExitCode
) -> None:
    since = "after validation" if source == "submission" else "after it was listed"
    image = tmp_path / "0000.png"
    Image.new("RGB", (9, 9), (1, 2, 3)).save(image, format="PNG")
    sha256 = sha256_file(image)
    assert pipeline.read_image(image, sha256, source).shape == (9, 9, 3)
    image.write_bytes(image.read_bytes() + b"more")
    changed = _read_guarded(image, sha256, source)
    assert isinstance(changed, error) and f"{image} changed {since}" in str(changed)
    image.unlink()
    missing = _read_guarded(image, sha256, source)
    assert isinstance(missing, error) and f"{image} is missing" in str(missing)
    os.mkfifo(image)
    fifo = _read_guarded(image, sha256, source)
    assert isinstance(fifo, error) and f"{image} became a FIFO (named pipe) {since}" in str(fifo)
    assert error.exit_code == exit_code  # type: ignore[attr-defined]


def test_an_unknown_image_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image source 'elsewhere'"):
        ImageItem(tmp_path / "a.png", "awe/a.png", "0" * 64, "awe", "elsewhere")  # type: ignore[arg-type]


def test_extractor_outputs_must_match_their_declaration(items: list[ImageItem], tmp_path: Path) -> None:
    class Liar(ToyExtractor):
        def declared_outputs(self, dim: int) -> dict[str, tuple[int, ...]]:
            return {"vec": (dim + 1,), "score": ()}

    with pytest.raises(RuntimeError, match="declares"):
        run(items, {"liar": Liar("liar")}, FeatureCache(tmp_path / "cache"))
    assert FeatureCache(tmp_path / "cache").size() == 0


def test_bad_settings_are_usage_errors(items: list[ImageItem], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="batch size"):
        extract(items, toy_set(), cache=no_cache(tmp_path), batch_size=0, show_progress=False)
    with pytest.raises(UsageError, match="workers"):
        extract(items, toy_set(), cache=no_cache(tmp_path), num_workers=-1, show_progress=False)
    with pytest.raises(ValueError, match="unknown emotion"):
        ImageItem(items[0].path, "joy/x.png", items[0].sha256, "joy")
    with pytest.raises(ValueError, match="sha256"):
        ImageItem(items[0].path, items[0].relpath, "", items[0].emotion)


def test_device_auto_and_absent_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="no CUDA device"):
        resolve_device("cuda")


def test_an_empty_set_gives_empty_arrays(tmp_path: Path) -> None:
    result = run([], toy_set(), no_cache(tmp_path))
    assert result.features["a"]["vec"].shape == (0, 6)
    assert result.lpips == {} and result.decoded == 0


# --- decoding and submissions --------------------------------------------------------------------


def test_decode_gives_rgb_uint8_for_grayscale_and_alpha(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    buffer = tmp_path / "g.png"
    Image.fromarray(gray, mode="L").save(buffer)
    rgb = decode_image(buffer.read_bytes())
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (5, 2), (10, 20, 30, 40)).save(rgba)
    assert decode_image(rgba.read_bytes()).shape == (2, 5, 3)


def test_items_from_report_are_canonical_and_match_the_files(tmp_path: Path) -> None:
    from emogen_bench.submission import validate_submission, write_example_submission

    write_example_submission(tmp_path / "sub", per_emotion=2, size=256)
    report = validate_submission(tmp_path / "sub", per_emotion=2, show_progress=False)
    items = items_from_report(report)
    assert len(items) == len(report.manifest) == 16
    keys = [(EMOTION_IDS[i.emotion], i.relpath) for i in items]
    assert keys == sorted(keys)
    for item in items:
        assert item.relpath.startswith(item.emotion + "/")
        assert sha256_file(item.path) == item.sha256


def test_the_tiny_model_set_runs_through_the_pipeline_identically(tmp_path: Path) -> None:
    from emogen_bench.features import tiny_extractors
    from emogen_bench.submission import validate_submission, write_example_submission

    write_example_submission(tmp_path / "sub", per_emotion=2, size=256)
    report = validate_submission(tmp_path / "sub", per_emotion=2, show_progress=False)
    items = [item for item in items_from_report(report) if item.emotion in EMOTIONS]  # fewer images: faster
    cache = FeatureCache(tmp_path / "cache")
    models = tiny_extractors()
    cold = extract(items, models, cache=cache, batch_size=3, num_workers=2, show_progress=False)
    other = extract(items, models, cache=no_cache(tmp_path), batch_size=16, num_workers=0, show_progress=False)
    warm = extract(items, models, cache=cache, batch_size=5, num_workers=2, show_progress=False)
    assert_same_features(cold, other)
    assert_same_features(cold, warm)
    assert all(counts["computed"] == 0 for counts in warm.counts.values()) and warm.decoded == 0
    assert set(cold.lpips) == {item.emotion for item in items}
