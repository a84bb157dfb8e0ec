"""Reference statistics: equal to float64 numpy on every feature, a seeded KID sample, versioned
metadata, atomic writes that never overwrite, and every image checked against the index."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_emoset import FakeEmoSet, make_fake_emoset
from tolerances import (
    assert_stats_within,
    covariance_rounding_bound,
    mean_rounding_bound,
    network_bound,
    stats_rounding_bounds,
)
from torch import nn

from emogen_bench import __version__
from emogen_bench.cache import FeatureCache
from emogen_bench.cli import reference_stats as cli
from emogen_bench.data import IndexRow, load_index, prepare_emoset, read_summary
from emogen_bench.errors import DataError, InvalidInputError, UsageError
from emogen_bench.features.base import ExtractorInfo, FeatureExtractor
from emogen_bench.hashing import sha256_file
from emogen_bench.pipeline import decode_image
from emogen_bench.reference_stats import (
    REFERENCE_FORMAT,
    REFERENCE_FORMAT_VERSION,
    ReferenceStats,
    build_reference_stats,
    kid_sample_positions,
    load_reference_stats,
)
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES, METRICS, PROTOCOL

DIM = 6


class ToyInception(FeatureExtractor):
    """A deterministic tiny stand-in for Inception: image -> 8x8 -> conv -> ``pool`` (DIM,); counts its images."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, kernel_size=3)
        self.linear = nn.Linear(4 * 6 * 6, DIM)
        with torch.no_grad():
            for parameter in (*self.conv.parameters(), *self.linear.parameters()):
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        artifacts = {"inception-fid": f"smoke:{seed}"}
        self.info = ExtractorInfo("inception", {"pool": (DIM,)}, "toy-1", artifacts, smoke=True)
        self.images_seen = 0

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None]
        return nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)[0]

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.linear(torch.relu(self.conv(batch)).flatten(1))}

    def __call__(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        self.images_seen += batch.shape[0]
        return super().__call__(batch)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A fake EmoSet (with every edge case), its index and the index rows."""

    root: Path
    index: Path
    rows: list[IndexRow]
    fake: FakeEmoSet | None = None


def make_reference(base: Path) -> Reference:
    root, index = base / "emoset", base / "index"
    fake = make_fake_emoset(root, image_size=16, edge_cases=True)
    prepare_emoset(root, index, show_progress=False)
    return Reference(root, index, load_index(index), fake)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return make_reference(tmp_path_factory.mktemp("reference"))


@pytest.fixture
def own_reference(tmp_path: Path) -> Reference:
    """A reference a test may damage."""
    return make_reference(tmp_path / "own")


def build(ref: Reference, out: Path, cache: FeatureCache | None = None, **options: object) -> ReferenceStats:
    options = {"batch_size": 4, "num_workers": 0, "device": "cpu", "show_progress": False, **options}
    extractor = options.pop("extractor", None) or ToyInception()
    return build_reference_stats(ref.index, ref.root, out, extractor=extractor,  # type: ignore[arg-type]
                                 cache=cache or FeatureCache(enabled=False), **options)  # type: ignore[arg-type]


def canonical_rows(rows: Sequence[IndexRow]) -> list[IndexRow]:
    return sorted(rows, key=lambda row: (EMOTION_IDS[row.emotion], row.path))


def direct_features(ref: Reference, rows: Sequence[IndexRow]) -> np.ndarray:
    """Each image decoded with PIL and run through the model on its own: the independent computation."""
    model = ToyInception()
    with torch.no_grad():
        return np.stack([
            model.forward(model.preprocess(decode_image((ref.root / row.path).read_bytes()))[None])["pool"][0].numpy()
            for row in rows
        ]).astype(np.float64)


def feature_error_bound(ref: Reference, rows: Sequence[IndexRow]) -> np.ndarray:
    """``(n, DIM)``: |batched - one-by-one features| of each image on any CPU, kernel or thread count.

    Both routes preprocess each image alone (the same inputs) and evaluate the same float32 network; each is
    within ``gamma_K(u32) |W2| relu(|W1| |x| + |b1|) + |b2|`` of the exact features (``network_bound``), so their
    difference is within twice that.
    """
    model = ToyInception()
    inputs = torch.stack([model.preprocess(decode_image((ref.root / row.path).read_bytes())) for row in rows])
    scale, unit = network_bound([model.conv, nn.ReLU(), nn.Flatten(), model.linear], inputs, per_image=True)
    return 2 * unit * scale


# --- the statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["all", "train"])
def test_statistics_equal_float64_numpy_on_all_features(reference: Reference, tmp_path: Path, split: str) -> None:
    stats = build(reference, tmp_path / "ref.npz", split=split)
    rows = canonical_rows([r for r in reference.rows if split == "all" or r.split == split])
    features = direct_features(reference, rows)
    error = feature_error_bound(reference, rows)  # batched vs one by one: float32 rounding, not one machine's
    emotions = np.array([row.emotion for row in rows])
    for emotion in EMOTION_NAMES:
        mine = emotions == emotion
        assert stats.per_emotion[emotion].n == mine.sum() >= 2
        assert_stats_within(stats.per_emotion[emotion], features[mine], error[mine])
    assert stats.pooled.n == len(rows)
    assert_stats_within(stats.pooled, features, error)
    assert stats.pooled.mu.dtype == stats.pooled.sigma.dtype == np.float64


def test_streaming_sums_equal_numpy_on_the_pipeline_features(reference: Reference, tmp_path: Path) -> None:
    """The reduction itself, to float64 precision: the same features, summed by numpy in one go."""
    stats = build(reference, tmp_path / "ref.npz")
    rows = canonical_rows(reference.rows)
    model = ToyInception()
    inputs = torch.stack([model.preprocess(decode_image((reference.root / r.path).read_bytes())) for r in rows])
    features = model(inputs)["pool"].astype(np.float64)  # fixed batches of 16, as in the pipeline
    emotions = np.array([row.emotion for row in rows])
    for emotion in EMOTION_NAMES:
        mine = features[emotions == emotion]
        # bitwise the same features on both sides; two float64 routes, each within its rounding bound of exact
        np.testing.assert_array_less(np.abs(stats.per_emotion[emotion].mu - mine.mean(axis=0)),
                                     2 * mean_rounding_bound(mine))
        np.testing.assert_array_less(np.abs(stats.per_emotion[emotion].sigma - np.cov(mine, rowvar=False)),
                                     2 * covariance_rounding_bound(mine))
    np.testing.assert_array_less(np.abs(stats.pooled.mu - features.mean(axis=0)), 2 * mean_rounding_bound(features))
    np.testing.assert_array_less(np.abs(stats.pooled.sigma - np.cov(features, rowvar=False)),
                                 2 * covariance_rounding_bound(features))


def test_the_edge_cases_of_the_fake_emoset_are_handled(reference: Reference, tmp_path: Path) -> None:
    """Images the index left out (problems, no label) are not in the statistics; kept edge cases are."""
    assert reference.fake is not None
    left_out = [image for image in reference.fake.images if image.outcome != "kept" and image.has_image_file]
    assert left_out and read_summary(reference.index)["problems"]  # images on disk that must not be counted
    stats = build(reference, tmp_path / "ref.npz")
    kept = Counter(image.emotion for image in reference.fake.kept())
    assert stats.metadata["counts"] == {emotion: kept[emotion] for emotion in EMOTION_NAMES}
    assert stats.pooled.n == len(reference.fake.kept()) == len(reference.rows)


def test_blocks_of_images_give_the_same_statistics(reference: Reference, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, small_kid: int) -> None:
    """Blocks split emotions and the KID draw across block boundaries; nothing may change but round-off."""
    import emogen_bench.reference_stats as module

    whole = build(reference, tmp_path / "whole.npz")
    assert whole.pooled.n < module.BLOCK_IMAGES
    monkeypatch.setattr(module, "BLOCK_IMAGES", 5)
    blocks = build(reference, tmp_path / "blocks.npz")
    for got, expected in [*((blocks.per_emotion[e], whole.per_emotion[e]) for e in EMOTION_NAMES),
                          (blocks.pooled, whole.pooled)]:
        assert got.n == expected.n
        # the same features merged in other blocks: two float64 routes, each within its rounding bound of exact
        mean_tol, sigma_tol = stats_rounding_bounds(expected.mu, expected.sigma, expected.n)
        np.testing.assert_array_less(np.abs(got.mu - expected.mu), 2 * mean_tol)
        np.testing.assert_array_less(np.abs(got.sigma - expected.sigma), 2 * sigma_tol)
    np.testing.assert_array_equal(blocks.kid_pooled, whole.kid_pooled)


def test_results_do_not_depend_on_batch_size_or_workers(reference: Reference, tmp_path: Path) -> None:
    one = build(reference, tmp_path / "a.npz", batch_size=1, num_workers=0)
    other = build(reference, tmp_path / "b.npz", batch_size=16, num_workers=2)
    for emotion in EMOTION_NAMES:
        np.testing.assert_array_equal(one.per_emotion[emotion].sigma, other.per_emotion[emotion].sigma)
        np.testing.assert_array_equal(one.kid_sample[emotion], other.kid_sample[emotion])
    np.testing.assert_array_equal(one.pooled.sigma, other.pooled.sigma)


# --- KID sample ----------------------------------------------------------------------------------


@pytest.fixture
def small_kid(monkeypatch: pytest.MonkeyPatch) -> int:
    """Keep 3 KID features per emotion, fewer than every emotion has, so the draw matters."""
    import emogen_bench.reference_stats as module

    monkeypatch.setattr(module, "METRICS", dataclasses.replace(METRICS, kid_reference_per_emotion=3))
    return 3


def test_kid_sample_is_a_seeded_subset_in_canonical_order(reference: Reference, tmp_path: Path, small_kid: int) -> None:
    stats = build(reference, tmp_path / "ref.npz", seed=5)
    rows = canonical_rows(reference.rows)
    features = direct_features(reference, rows).astype(np.float32)
    error = feature_error_bound(reference, rows)
    counts = {emotion: sum(row.emotion == emotion for row in rows) for emotion in EMOTION_NAMES}
    assert min(counts.values()) > small_kid
    chosen = kid_sample_positions(counts, 5, small_kid)
    emotions = np.array([row.emotion for row in rows])
    for emotion in EMOTION_NAMES:
        sample = stats.kid_sample[emotion]
        assert sample.shape == (small_kid, DIM) and sample.dtype == np.float32
        assert len(np.unique(chosen[emotion])) == small_kid and np.all(np.diff(chosen[emotion]) > 0)
        # batched vs one by one: within feature_error_bound (float32 network rounding, any CPU)
        expected = features[emotions == emotion][chosen[emotion]]
        np.testing.assert_array_less(np.abs(sample - expected), error[emotions == emotion][chosen[emotion]])
    assert stats.metadata["kid_sample_counts"] == {emotion: small_kid for emotion in EMOTION_NAMES}
    np.testing.assert_array_equal(stats.kid_pooled, np.concatenate([stats.kid_sample[e] for e in EMOTION_NAMES]))


def test_kid_sample_is_deterministic_for_a_seed_and_changes_with_it(reference: Reference, tmp_path: Path,
                                                                    small_kid: int) -> None:
    first = build(reference, tmp_path / "a.npz", seed=1)
    again = build(reference, tmp_path / "b.npz", seed=1)
    other = build(reference, tmp_path / "c.npz", seed=2)
    np.testing.assert_array_equal(first.kid_pooled, again.kid_pooled)
    assert not np.array_equal(first.kid_pooled, other.kid_pooled)
    np.testing.assert_array_equal(first.pooled.sigma, other.pooled.sigma)  # the seed touches only the sample
    assert first.metadata["seed"] == 1 and other.metadata["seed"] == 2


def test_kid_positions_take_everything_when_an_emotion_is_small() -> None:
    chosen = kid_sample_positions({"awe": 4, "fear": 10}, seed=0, per_emotion=6)
    np.testing.assert_array_equal(chosen["awe"], np.arange(4))
    assert len(chosen["fear"]) == 6 and len(chosen["amusement"]) == 0


# --- the file ------------------------------------------------------------------------------------


def test_the_file_round_trips_with_its_metadata(reference: Reference, tmp_path: Path) -> None:
    out = tmp_path / "ref.npz"
    built = build(reference, out, split="all", seed=3)
    assert built.path == out and built.sha256 == sha256_file(out)
    loaded = load_reference_stats(out)
    assert loaded.sha256 == built.sha256
    for emotion in EMOTION_NAMES:
        np.testing.assert_array_equal(loaded.per_emotion[emotion].mu, built.per_emotion[emotion].mu)
        np.testing.assert_array_equal(loaded.per_emotion[emotion].sigma, built.per_emotion[emotion].sigma)
        np.testing.assert_array_equal(loaded.kid_sample[emotion], built.kid_sample[emotion])
        assert loaded.per_emotion[emotion].n == built.per_emotion[emotion].n
    np.testing.assert_array_equal(loaded.pooled.sigma, built.pooled.sigma)
    meta = loaded.metadata
    assert meta["format"] == REFERENCE_FORMAT and meta["format_version"] == REFERENCE_FORMAT_VERSION
    assert meta["protocol"] == PROTOCOL and meta["benchmark_version"] == __version__
    assert meta["index_digest"] == "sha256:" + read_summary(reference.index)["index"]["sha256"]
    assert meta["split"] == "all" and meta["seed"] == 3
    assert meta["counts"] == {e: sum(r.emotion == e for r in reference.rows) for e in EMOTION_NAMES}
    info = ToyInception().info
    assert meta["extractor"]["cache_key"] == info.cache_key and meta["extractor"]["smoke"] is True
    assert meta["extractor"]["artifacts"] == dict(info.artifacts)
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert loaded.smoke
    provenance = loaded.provenance()
    assert provenance["sha256"] == built.sha256 and provenance["path"] == str(out)
    json.dumps(provenance)


def test_an_existing_file_is_never_overwritten_without_the_flag(reference: Reference, tmp_path: Path) -> None:
    out = tmp_path / "ref.npz"
    out.write_bytes(b"precious")
    extractor = ToyInception()
    with pytest.raises(UsageError, match="already exists"):
        build(reference, out, extractor=extractor)
    assert out.read_bytes() == b"precious"
    assert extractor.images_seen == 0  # refused before any work
    stats = build(reference, out, overwrite=True)
    assert stats.sha256 == sha256_file(out) and load_reference_stats(out).sha256 == stats.sha256
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private temporary one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npz"]  # no temporary file left behind
    with pytest.raises(UsageError, match="is a folder"):
        build(reference, tmp_path)


def test_a_second_build_reads_the_cache_and_computes_nothing(reference: Reference, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    first = build(reference, tmp_path / "a.npz", cache=cache)
    extractor = ToyInception()
    second = build(reference, tmp_path / "b.npz", cache=cache, extractor=extractor)
    assert extractor.images_seen == 0
    np.testing.assert_array_equal(first.pooled.sigma, second.pooled.sigma)
    np.testing.assert_array_equal(first.kid_pooled, second.kid_pooled)


# --- the images are checked ----------------------------------------------------------------------


def test_a_changed_image_is_an_error_naming_it(own_reference: Reference, tmp_path: Path) -> None:
    row = own_reference.rows[5]
    path = own_reference.root / row.path
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    out = tmp_path / "ref.npz"
    with pytest.raises(DataError, match="changed after it was listed") as raised:
        build(own_reference, out)
    assert str(path) in str(raised.value) and row.sha256 in str(raised.value)
    assert not out.exists()


def test_a_missing_image_is_an_error_naming_it_before_any_work(own_reference: Reference, tmp_path: Path) -> None:
    row = own_reference.rows[-1]
    (own_reference.root / row.path).unlink()
    extractor = ToyInception()
    with pytest.raises(DataError, match="missing") as raised:
        build(own_reference, tmp_path / "ref.npz", extractor=extractor)
    assert str(own_reference.root / row.path) in str(raised.value)
    assert extractor.images_seen == 0


def test_an_index_without_hashes_is_refused(tmp_path: Path) -> None:
    root, index = tmp_path / "emoset", tmp_path / "index"
    make_fake_emoset(root, image_size=16, edge_cases=False)
    prepare_emoset(root, index, hash_files=False, show_progress=False)
    with pytest.raises(DataError, match="--no-hash"):
        build(Reference(root, index, load_index(index)), tmp_path / "ref.npz")


def test_a_split_with_too_few_images_per_emotion_is_refused(reference: Reference, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fewer than 2 images"):
        build(reference, tmp_path / "ref.npz", split="val")  # the fake EmoSet has 1 val image per emotion
    with pytest.raises(UsageError, match="unknown split"):
        build(reference, tmp_path / "ref.npz", split="dev")


# --- loading and checking ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_file(reference: Reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "ref.npz"
    build(reference, out)
    return out


def _rewrite(source: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


def _set_meta(arrays: dict[str, np.ndarray], **values: object) -> None:
    meta = json.loads(str(arrays["metadata"][()]))
    meta.update(values)
    arrays["metadata"] = np.array(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: _set_meta(a, format_version=REFERENCE_FORMAT_VERSION + 1), "format version"),
        (lambda a: _set_meta(a, format="something-else"), "format is not"),
        (lambda a: _set_meta(a, protocol="eicg-v0"), "protocol"),
        (lambda a: a.pop("metadata"), "no metadata"),
        (lambda a: a.pop("sigma.awe"), "sigma.awe"),
        (lambda a: a.update({"mu.pooled": np.zeros(DIM + 1)}), "shape"),
        (lambda a: a.update({"kid.fear": a["kid.fear"][:1]}), "kid.fear"),
        (lambda a: a["sigma.pooled"].__setitem__((0, 0), np.nan), "NaN"),
    ],
)
def test_damaged_or_foreign_files_are_refused_with_a_reason(  # type: ignore[no-untyped-def]
    built_file: Path, tmp_path: Path, change, message: str
) -> None:
    bad = _rewrite(built_file, tmp_path / "bad.npz", change)
    with pytest.raises(InvalidInputError, match=message) as raised:
        load_reference_stats(bad)
    assert str(bad) in str(raised.value) and "reference-stats build" in str(raised.value)


def test_the_rebuild_hint_names_the_files_own_protocol(built_file: Path, tmp_path: Path) -> None:
    """A damaged paper-code file is to be rebuilt under paper-code; a protocol that is no name is a reason, no crash."""

    def paper_code_without_an_array(arrays: dict[str, np.ndarray]) -> None:
        _set_meta(arrays, protocol="emogen-paper-code")
        arrays.pop("sigma.awe")

    bad = _rewrite(built_file, tmp_path / "bad-paper.npz", paper_code_without_an_array)
    with pytest.raises(InvalidInputError, match="sigma.awe") as raised:
        load_reference_stats(bad)
    assert "--protocol emogen-paper-code" in str(raised.value)
    listed = _rewrite(built_file, tmp_path / "bad-list.npz", lambda a: _set_meta(a, protocol=["eicg-v3"]))
    with pytest.raises(InvalidInputError, match="protocol") as raised:
        load_reference_stats(listed)
    assert "--protocol" not in str(raised.value)


def test_missing_and_non_npz_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="do not exist"):
        load_reference_stats(tmp_path / "absent.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InvalidInputError, match="cannot be read"):
        load_reference_stats(junk)


def test_statistics_from_another_extractor_are_refused_naming_both(built_file: Path) -> None:
    stats = load_reference_stats(built_file)
    stats.check_extractor(ToyInception().info)
    other = ToyInception(seed=9).info
    with pytest.raises(UsageError) as raised:
        stats.check_extractor(other)
    assert stats.extractor["cache_key"] in str(raised.value) and other.cache_key in str(raised.value)


# --- command line --------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emogen-bench")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_show_prints_a_table_and_json(built_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["reference-stats", "show", str(built_file)]) == 0
    text = capsys.readouterr().out
    assert sha256_file(built_file) in text and "SMOKE" in text and "amusement" in text
    assert _cli(["reference-stats", "show", str(built_file), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sha256"] == sha256_file(built_file) and document["split"] == "all"


def test_cli_build_passes_every_option_to_the_api(reference: Reference, tmp_path: Path, bench_home: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import emogen_bench.features as features

    asked: list[tuple[list[str], str]] = []

    def fake_build_extractors(names, store=None, *, protocol=PROTOCOL):  # type: ignore[no-untyped-def]
        asked.append((list(names), protocol))
        return {"inception": ToyInception()}

    monkeypatch.setattr(features, "build_extractors", fake_build_extractors)
    out = tmp_path / "cli.npz"
    argv = ["reference-stats", "build", "--index", str(reference.index), "--emoset-root", str(reference.root),
            "--out", str(out), "--split", "train", "--device", "cpu", "--batch-size", "3", "--workers", "0",
            "--seed", "4", "--quiet", "--json"]
    assert _cli(argv) == 0
    assert asked == [(["inception"], PROTOCOL)]
    document = json.loads(capsys.readouterr().out)
    assert document["split"] == "train" and document["seed"] == 4 and document["path"] == str(out)
    assert document["sha256"] == sha256_file(out)
    assert (bench_home / "features").is_dir()  # the default cache was used
    with pytest.raises(UsageError, match="already exists"):
        _cli(argv)
    assert _cli([*argv, "--overwrite", "--no-cache"]) == 0


def test_a_data_parallel_build_refuses_an_unusable_cache_before_reading_images(
    reference: Reference, tmp_path: Path
) -> None:
    from emogen_bench.distributed import World
    from emogen_bench.reference_stats import fill_reference_cache_for_rank

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=r"feature cache folder .*a-file.* cannot be used"):
        fill_reference_cache_for_rank(reference.index, reference.root, extractor=ToyInception(),  # type: ignore[arg-type]
                                      world=World(0, 2, 0), cache=FeatureCache(root=blocker), device="cpu")  # fmt: skip
    assert blocker.read_text() == "x"
