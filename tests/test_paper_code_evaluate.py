"""``evaluate --protocol emogen-paper-code`` end to end, every value against a direct computation.

A small JPEG submission (the synthetic example, 8 emotions x 3 images saved as
``*.jpg``) is evaluated with the test weights written in the real layouts
(``conftest.real_layout_weights``) and paper-code reference statistics built
from a fake EmoSet.  The models are loaded here straight from the written
files (TorchScript, the ``lpips`` package, transformers' ``CLIPModel``), each
image is preprocessed here as the released code does, and FID, LPIPS and Sem-D
are recomputed from scratch (scipy ``sqrtm``, the pairs drawn as documented).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import checkpoints as ckpt
import lpips
import numpy as np
import pytest
import torch
from conftest import RealLayoutWeights
from PIL import Image
from scipy import linalg
from tolerances import EPS64, assert_stats_within, gamma
from torchvision import models, transforms
from transformers import CLIPModel

import emogen_bench.pipeline as pipeline
from emogen_bench.cache import FeatureCache
from emogen_bench.cli import main
from emogen_bench.config import EvalConfig
from emogen_bench.data import load_index
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.evaluate import evaluate, metric_values_key
from emogen_bench.features import build_extractors, tiny_extractors
from emogen_bench.features.base import run_fixed_batches
from emogen_bench.features.clip_pixels import clip_pixels_double_rescaled
from emogen_bench.models.clip import load_clip_pixel_settings
from emogen_bench.protocols import PAPER_CODE
from emogen_bench.reference_stats import build_reference_stats, load_reference_stats
from emogen_bench.report import PAPER_CODE_BANNER, render
from emogen_bench.results import EvaluationResult, read_results
from emogen_bench.task import EMOTION_NAMES, PROTOCOL
from emogen_bench.weights import open_store

PER_EMOTION = 3
PAIRS = 10
PAPER_METRICS = ("fid", "lpips", "emo_a", "sem_c", "sem_d")


def _write_jpeg_submission(out: Path, *, keep_png: int = 0) -> Path:
    """The example submission with its images saved as ``*.jpg`` (the first ``keep_png`` of each emotion stay PNG)."""
    from emogen_bench.submission import write_example_submission

    submission = write_example_submission(out, per_emotion=PER_EMOTION)
    (submission / "submission.json").unlink()  # its seeds name the .png files
    for emotion in EMOTION_NAMES:
        for path in sorted((submission / emotion).glob("*.png"))[keep_png:]:
            Image.open(path).save(path.with_suffix(".jpg"), quality=95)
            path.unlink()
    return submission


@pytest.fixture(scope="module")
def jpeg_submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_jpeg_submission(tmp_path_factory.mktemp("paper-code") / "submission")


@dataclasses.dataclass(frozen=True)
class PaperReference:
    path: Path
    emoset: Path
    index: Path


@pytest.fixture(scope="module")
def paper_reference(tmp_path_factory: pytest.TempPathFactory, real_layout_weights: RealLayoutWeights) -> PaperReference:
    """Paper-code reference statistics of a fake EmoSet (3 images per emotion), the override's Inception."""
    from fake_emoset import make_fake_emoset

    from emogen_bench.data import prepare_emoset

    base = tmp_path_factory.mktemp("paper-code-reference")
    make_fake_emoset(base / "emoset", per_split={"train": 1, "val": 1, "test": 1}, edge_cases=False, image_size=16)
    prepare_emoset(base / "emoset", base / "index", show_progress=False)
    inception = build_extractors(["inception"], open_store(real_layout_weights.override), protocol=PAPER_CODE)
    build_reference_stats(
        base / "index", base / "emoset", base / "reference.npz", extractor=inception["inception"],
        cache=FeatureCache(enabled=False), num_workers=0, device="cpu", show_progress=False, protocol=PAPER_CODE,
    )  # fmt: skip
    return PaperReference(base / "reference.npz", base / "emoset", base / "index")


@dataclasses.dataclass(frozen=True)
class PaperEvaluation:
    home: Path
    config: EvalConfig
    result: EvaluationResult


@pytest.fixture(scope="module")
def paper_evaluation(
    tmp_path_factory: pytest.TempPathFactory, real_layout_weights: RealLayoutWeights, jpeg_submission: Path,
    paper_reference: PaperReference,
) -> PaperEvaluation:  # fmt: skip
    home = tmp_path_factory.mktemp("paper-code-home")
    config = EvalConfig(
        per_emotion=PER_EMOTION, reference_stats=paper_reference.path, device="cpu", batch_size=4, num_workers=0,
        weights_override=real_layout_weights.override, show_progress=False, protocol=PAPER_CODE,
    )  # fmt: skip
    result = evaluate(jpeg_submission, config, cache=FeatureCache(root=home / "features"))
    return PaperEvaluation(home, config, result)


# --- direct computations ------------------------------------------------------------------------------------------


def _files(submission: Path) -> list[Path]:
    """The submission's images in canonical order (emotion id, then name)."""
    return [path for emotion in EMOTION_NAMES for path in sorted((submission / emotion).iterdir())]


def _released_inception_features(model: torch.jit.ScriptModule, paths: list[Path]) -> np.ndarray:
    """Resize((299, 299)) on the PIL image, ToTensor, (x * 255).byte(), then torchmetrics' (x - 128) / 128.

    The network runs in the pipeline's fixed batches (``run_fixed_batches``): on equal inputs the features are
    then the pipeline's bit for bit on any CPU (batch-composition independence is asserted elsewhere), so the
    statistics and FIDs compared here differ only by float64 rounding, not by float32 kernels.
    """
    pipeline_ = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor()])
    batch = torch.stack([(pipeline_(Image.open(p).convert("RGB")) * 255).byte() for p in paths]).float()
    with torch.no_grad():
        return run_fixed_batches(lambda b: {"pool": model.layers((b - 128) / 128).reshape(b.shape[0], -1)},
                                 batch)["pool"].astype(np.float64)  # fmt: skip


def _direct_fid(ref_mu: np.ndarray, ref_sigma: np.ndarray, x: np.ndarray) -> float:
    mu, sigma = x.mean(axis=0), np.cov(x, rowvar=False)
    root = linalg.sqrtm(ref_sigma @ sigma).real
    return float((ref_mu - mu) @ (ref_mu - mu) + np.trace(ref_sigma) + np.trace(sigma) - 2 * np.trace(root))


def _documented_pairs(files: list[Path], seed: int, pairs: int) -> dict[str, list[tuple[int, int]]]:
    """The sampling docs/paper_code.md describes: one generator, emotions in order, pool of emotions 1..k."""
    rng = np.random.default_rng(seed)
    drawn = {}
    for k, emotion in enumerate(EMOTION_NAMES):
        pool = sum(1 for p in files if EMOTION_NAMES.index(p.parent.name) <= k)
        drawn[emotion] = [tuple(int(i) for i in rng.choice(pool, size=2, replace=False)) for _ in range(pairs)]
    return drawn


def _package_lpips(trunk_file: Path) -> lpips.LPIPS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    alexnet = models.alexnet()
    alexnet.load_state_dict(torch.load(trunk_file, map_location="cpu"))
    for part in (network.net.slice1, network.net.slice2, network.net.slice3, network.net.slice4, network.net.slice5):
        for name, layer in part.named_children():
            layer.load_state_dict(alexnet.features[int(name)].state_dict())
    return network.eval()


# --- the results document -----------------------------------------------------------------------------------------


def test_the_results_say_the_protocol_and_hold_its_metrics(paper_evaluation: PaperEvaluation) -> None:
    document = paper_evaluation.result.to_dict()
    assert document["protocol"] == PAPER_CODE and document["smoke"] is False
    assert document["config"]["protocol"] == PAPER_CODE and document["config"]["pairs"] == PAIRS
    assert document["reference"]["protocol"] == PAPER_CODE and document["reference"]["split"] == "all"
    assert document["not_computed"] == {}
    assert list(document["metrics"]["overall"]) == list(PAPER_METRICS)
    assert set(document["features"]) == {"inception", "clip", "semantic"}  # LPIPS runs on the pairs only
    assert "pairs" in document["timings"]
    assert {"lpips-alex-v0.1", "alexnet-lpips-trunk", "inception-fid"} <= set(document["artifacts"])
    lpips_entry = document["metrics"]["overall"]["lpips"]
    assert lpips_entry["pairs"] == PAIRS * 8 and lpips_entry["skipped_non_jpg"] == 0 and lpips_entry["jpg_files"] == 24
    table = render(document, "table")
    assert f"protocol {PAPER_CODE}" in table and PAPER_CODE_BANNER in table


@pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning")  # 3 reference images, 64-d
def test_fid_is_torchmetrics_formulation_on_the_released_preprocessing(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, paper_reference: PaperReference,
    real_layout_weights: RealLayoutWeights,
) -> None:  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(real_layout_weights.paths["inception-fid"]), map_location="cpu").eval()
    rows = load_index(paper_reference.index)
    reference_paths = {e: [paper_reference.emoset / r.path for r in rows if r.emotion == e] for e in EMOTION_NAMES}
    reference_features = {e: _released_inception_features(model, ps) for e, ps in reference_paths.items()}
    stored = load_reference_stats(paper_reference.path)
    assert stored.protocol == PAPER_CODE and not any(len(s) for s in stored.kid_sample.values())
    for emotion, features in reference_features.items():  # ALL images of each emotion, every split
        assert stored.per_emotion[emotion].n == len(features) == 3
        assert_stats_within(stored.per_emotion[emotion], features, 0.0)  # the same features: float64 rounding only
    assert_stats_within(stored.pooled, np.concatenate(list(reference_features.values())), 0.0)

    files = _files(jpeg_submission)
    x = _released_inception_features(model, files)
    labels = np.array([p.parent.name for p in files])
    metrics = paper_evaluation.result.to_dict()["metrics"]
    per_emotion = []
    for emotion in EMOTION_NAMES:
        stats = stored.per_emotion[emotion]
        expected = _direct_fid(stats.mu, stats.sigma, x[labels == emotion])
        per_emotion.append(expected)
        assert metrics["per_emotion"][emotion]["fid"]["value"] == pytest.approx(expected, rel=1e-5)
    overall = metrics["overall"]["fid"]
    assert overall["value"] == pytest.approx(_direct_fid(stored.pooled.mu, stored.pooled.sigma, x), rel=1e-5)
    assert overall["mean_over_emotions"] == pytest.approx(np.mean(per_emotion), rel=1e-5)
    assert overall["ci95"] is None


def test_lpips_and_sem_d_are_the_released_computations_on_the_documented_pairs(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, real_layout_weights: RealLayoutWeights
) -> None:
    files = _files(jpeg_submission)
    drawn = _documented_pairs(files, seed=paper_evaluation.config.seed, pairs=PAIRS)
    arrays = [np.array(Image.open(p).convert("RGB")) for p in files]
    network = _package_lpips(real_layout_weights.paths["alexnet-lpips-trunk"])
    snapshot = real_layout_weights.paths["clip-vit-l14"]
    clip = CLIPModel.from_pretrained(snapshot, local_files_only=True).eval()
    # The released Sem-D input: ToTensor floats given to transformers 4.34's processor.  That pipeline is checked
    # bitwise against 4.34 in test_clip_pixels.py; here it is also checked against the installed PIL processor
    # (within float32 rounding: 5.x orders two multiplications differently), and its pixels feed the embeddings, so
    # the comparison below tests the pairs, the model and the MSE, not a 1e-7 pixel difference that the near-blank
    # images' tiny Sem-D (~5e-8) would amplify.
    settings = load_clip_pixel_settings(snapshot)
    peer = ckpt.pil_clip_processor(snapshot)
    to_tensor = transforms.ToTensor()
    with torch.no_grad():
        pixels = torch.stack([torch.from_numpy(clip_pixels_double_rescaled(a, settings)) for a in arrays])
        peer_pixels = peer(images=[a.astype(np.float32) / 255 for a in arrays], return_tensors="pt")["pixel_values"]
        np.testing.assert_allclose(pixels.numpy(), peer_pixels.numpy(), rtol=0, atol=18 * 2.0**-24)
        # in the pipeline's fixed batches of 16: its embeddings bit for bit (batch-composition independence)
        embedding = run_fixed_batches(lambda b: {"e": clip.visual_projection(clip.vision_model(pixel_values=b)
                                                                             .pooler_output)}, pixels)["e"]  # fmt: skip
        embedding = embedding.astype(np.float64)
        lpips_values, sem_d_values = {}, {}
        for emotion, pairs in drawn.items():
            lpips_values[emotion] = np.mean(
                [network(to_tensor(arrays[i])[None], to_tensor(arrays[j])[None]).item() for i, j in pairs]
            )  # [0, 1] inputs, full resolution
            sem_d_values[emotion] = np.mean([np.mean((embedding[i] - embedding[j]) ** 2) for i, j in pairs])
    metrics = paper_evaluation.result.to_dict()["metrics"]
    # Both sides hold the same float32 numbers per pair: LPIPS from the same modules on the same one-image batches
    # (ToTensor is unit_tensor's float32 division by 255), embeddings bit for bit; what is left is float64: a mean
    # of P pairs (gamma_{P+1}) on each side, and for Sem-D each pair's exact float32 differences, squared and
    # averaged over d (gamma_{d+3}), all terms non-negative, so the bounds are relative to the value.
    dim = embedding.shape[1]
    for emotion in EMOTION_NAMES:
        count = len(drawn[emotion])
        got = metrics["per_emotion"][emotion]
        assert abs(got["lpips"]["value"] - lpips_values[emotion]) <= 2 * gamma(count + 1, EPS64) * lpips_values[emotion]
        sem_d_tol = 2 * gamma(dim + count + 4, EPS64) * sem_d_values[emotion]
        assert abs(got["sem_d"]["value"] - sem_d_values[emotion]) <= sem_d_tol
    for key, values in (("lpips", lpips_values), ("sem_d", sem_d_values)):
        expected = np.mean(list(values.values()))  # the per-emotion bounds, then a mean of 8 (gamma_9) on each side
        tolerance = 2 * gamma(dim + max(len(p) for p in drawn.values()) + 4 + 9, EPS64) * expected
        assert abs(metrics["overall"][key]["value"] - expected) <= tolerance
    assert metrics["per_emotion"]["sadness"]["lpips"]["cross_emotion_pairs"] > 0  # the pool is never reset


def test_emo_a_and_sem_c_are_eicg_values_from_the_same_cache_entries(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reading(path: Path, sha256: str) -> np.ndarray:
        raise AssertionError(f"the eicg-v3 features of {path} were not in the cache")

    monkeypatch.setattr(pipeline, "read_image", no_reading)
    config = dataclasses.replace(
        paper_evaluation.config, protocol=PROTOCOL, metrics=("emo_a", "sem_c"), reference_stats=None
    )
    eicg = evaluate(jpeg_submission, config, cache=FeatureCache(root=paper_evaluation.home / "features"))
    assert eicg.protocol == PROTOCOL
    assert all(counts["computed"] == 0 for counts in eicg.features.values())
    paper = paper_evaluation.result.to_dict()["metrics"]
    other = eicg.to_dict()["metrics"]
    for key in ("emo_a", "sem_c"):
        assert other["overall"][key] == paper["overall"][key]
        assert all(other["per_emotion"][e][key] == paper["per_emotion"][e][key] for e in EMOTION_NAMES)


# --- cache, pairs and refusals ------------------------------------------------------------------------------------


def test_a_warm_reevaluation_reads_no_image_and_the_pair_count_is_in_the_key(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(root=paper_evaluation.home / "features")
    monkeypatch.setattr(pipeline, "read_image", lambda *a: pytest.fail("a warm re-evaluation read an image"))
    again = evaluate(jpeg_submission, paper_evaluation.config, cache=cache)
    assert again.metrics_cached and again.to_dict()["metrics"] == paper_evaluation.result.to_dict()["metrics"]
    monkeypatch.undo()
    fewer = dataclasses.replace(paper_evaluation.config, metrics=("lpips", "sem_d"), pairs=4)
    other = evaluate(jpeg_submission, fewer, cache=cache)
    assert not other.metrics_cached and other.overall["lpips"].extra["pairs"] == 4 * 8
    common = {"metrics": ("lpips",), "seed": 0, "submission_digest": "sha256:x", "per_emotion": 3,
              "reference_sha256": None, "extractor_identity": {"lpips": "k"}}  # fmt: skip
    keys = {
        metric_values_key(protocol=protocol, protocol_version=version, pairs=pairs, **common)
        for protocol, version, pairs in (
            (PROTOCOL, 2, None), (PAPER_CODE, 2, 10), (PAPER_CODE, 2, 4), (PAPER_CODE, 1, 4),
        )  # fmt: skip
    }
    assert len(keys) == 4


def test_reference_statistics_of_the_other_protocol_are_refused(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, e2e_reference: Path, paper_reference: PaperReference,
    tmp_path: Path,
) -> None:  # fmt: skip
    config = dataclasses.replace(paper_evaluation.config, reference_stats=e2e_reference)
    with pytest.raises(UsageError) as caught:
        evaluate(jpeg_submission, config, cache=FeatureCache(root=tmp_path / "cache"))
    assert PROTOCOL in str(caught.value) and f"--protocol {PAPER_CODE}" in str(caught.value)
    eicg = dataclasses.replace(paper_evaluation.config, protocol=PROTOCOL, metrics=("fid",))
    with pytest.raises(UsageError, match="built for protocol emogen-paper-code"):
        evaluate(jpeg_submission, eicg, cache=FeatureCache(root=tmp_path / "cache"))


def test_config_and_extractor_variants_are_checked(jpeg_submission: Path, paper_reference: PaperReference) -> None:
    with pytest.raises(UsageError, match="fid, lpips, emo_a, sem_c, sem_d"):
        EvalConfig(protocol=PAPER_CODE, metrics=("kid",))
    with pytest.raises(UsageError, match="pairs"):
        EvalConfig(protocol=PAPER_CODE, pairs=0)
    with pytest.raises(UsageError, match="unknown protocol"):
        EvalConfig(protocol="eicg-v0")
    assert EvalConfig(protocol=PAPER_CODE).metrics == PAPER_METRICS
    config = EvalConfig(
        metrics=("fid",), per_emotion=PER_EMOTION, device="cpu", num_workers=0, show_progress=False,
        protocol=PAPER_CODE,
    )  # fmt: skip
    reference = load_reference_stats(paper_reference.path)
    with pytest.raises(UsageError, match="not the one of protocol emogen-paper-code"):  # eicg's Inception
        evaluate(jpeg_submission, config, extractors=tiny_extractors(), reference=reference)


def test_a_smoke_run_with_png_files_skips_them_for_the_pair_metrics(tmp_path: Path) -> None:
    mixed = _write_jpeg_submission(tmp_path / "mixed", keep_png=1)
    config = EvalConfig(
        metrics=("lpips", "sem_d", "emo_a"), per_emotion=PER_EMOTION, device="cpu", num_workers=0,
        show_progress=False, protocol=PAPER_CODE, pairs=3,
    )  # fmt: skip
    extractors = tiny_extractors(protocol=PAPER_CODE)
    result = evaluate(mixed, config, extractors=extractors, cache=FeatureCache(enabled=False))
    assert result.smoke and result.protocol == PAPER_CODE and result.protocol_version == 2
    overall = result.overall["lpips"]
    assert overall.extra["skipped_non_jpg"] == 8 and overall.extra["jpg_files"] == 16 and overall.n <= 16
    assert result.overall["sem_d"].extra == result.overall["sem_d"].extra | {"pairs": 24}
    assert result.overall["emo_a"].n == 16 and result.overall["emo_a"].extra["skipped_files"] == 8
    png_only = tmp_path / "png"
    from emogen_bench.submission import write_example_submission

    write_example_submission(png_only, per_emotion=PER_EMOTION)
    result = evaluate(png_only, config, extractors=extractors, cache=FeatureCache(enabled=False))
    assert set(result.not_computed) == {"lpips", "sem_d", "emo_a"} and "jpg" in result.not_computed["lpips"]
    assert "'jpg'" in result.not_computed["emo_a"] and "0 of 24 files" in result.not_computed["emo_a"]
    assert result.overall == {} and result.features == {}  # nothing the released code would read, nothing run


def _rename_suffixes(submission: Path, suffix_of: dict[int, str]) -> None:
    """Give the i-th file of each emotion (sorted) the suffix ``suffix_of[i]``, re-encoded to match it."""
    for emotion in EMOTION_NAMES:
        for i, path in enumerate(sorted(p for p in (submission / emotion).iterdir())):
            if i in suffix_of:
                image = Image.open(path).convert("RGB")
                path.unlink()
                target = path.with_suffix(suffix_of[i])
                image.save(target, format="PNG" if suffix_of[i].lower() == ".png" else "JPEG", quality=95)


def load_reference_stats_for_tiny(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Paper-code reference statistics of a fake EmoSet through the tiny paper-code Inception."""
    from fake_emoset import make_fake_emoset

    from emogen_bench.data import prepare_emoset

    make_fake_emoset(tmp_path / "emoset", per_split={"train": 1, "val": 1, "test": 1}, edge_cases=False, image_size=16)
    prepare_emoset(tmp_path / "emoset", tmp_path / "index", show_progress=False)
    build_reference_stats(
        tmp_path / "index", tmp_path / "emoset", tmp_path / "reference.npz",
        extractor=tiny_extractors(["inception"], protocol=PAPER_CODE)["inception"], cache=FeatureCache(enabled=False),
        num_workers=0, device="cpu", show_progress=False, protocol=PAPER_CODE,
    )  # fmt: skip
    return load_reference_stats(tmp_path / "reference.npz")


def test_each_metric_reads_the_files_its_released_script_reads(tmp_path: Path) -> None:
    """Per emotion: a.JPG, b.jpeg, c.PNG, d.png, e.jpg -> FID reads .jpeg/.png/.jpg (3), Emo-A and Sem-C *jpg (1)."""
    from emogen_bench.submission import write_example_submission

    submission = write_example_submission(tmp_path / "mixed", per_emotion=5)
    (submission / "submission.json").unlink()
    _rename_suffixes(submission, {0: ".JPG", 1: ".jpeg", 2: ".PNG", 3: ".png", 4: ".jpg"})
    reference = load_reference_stats_for_tiny(tmp_path)
    config = EvalConfig(
        metrics=("fid", "emo_a", "sem_c"), per_emotion=5, device="cpu", num_workers=0, show_progress=False,
        protocol=PAPER_CODE,
    )  # fmt: skip
    result = evaluate(
        submission, config, extractors=tiny_extractors(protocol=PAPER_CODE), reference=reference,
        cache=FeatureCache(enabled=False),
    )  # fmt: skip
    assert result.to_dict()["submission"]["n_images"] == 40  # every file is valid; the protocol picks
    assert result.overall["fid"].n == 24 and result.overall["fid"].extra["skipped_files"] == 16
    assert result.overall["emo_a"].n == 8 and result.overall["emo_a"].extra["skipped_files"] == 32
    assert result.overall["sem_c"].n == 8 and result.per_emotion["awe"]["sem_c"].n == 1
    assert result.features == {
        "inception": {"computed": 24, "cached": 0}, "clip": {"computed": 8, "cached": 0},
        "semantic": {"computed": 8, "cached": 0},
    }  # fmt: skip
    direct = tiny_extractors(["clip"], protocol=PAPER_CODE)["clip"]
    jpgs = sorted(p for p in submission.rglob("*") if p.name.endswith("jpg"))
    pixels = torch.stack([direct.preprocess(np.array(Image.open(p).convert("RGB"))) for p in jpgs])
    # the same extractor in the same fixed batches of 16: the pipeline's logits bit for bit, and a float64 softmax
    # keeps the order of distinct float32 logits, so both sides take the same argmax wherever the top two differ
    logits = direct(pixels)["emotion_logits"]
    top_two = np.sort(logits, axis=1)[:, -2:]
    assert np.all(top_two[:, 1] > top_two[:, 0])
    predicted = logits.argmax(axis=1)
    targets = np.array([EMOTION_NAMES.index(p.parent.name) for p in jpgs])
    assert result.overall["emo_a"].value == pytest.approx(float(np.mean(predicted == targets)), abs=1e-12)


# --- the command line ---------------------------------------------------------------------------------------------


def test_the_cli_evaluates_under_the_protocol_and_prints_it(
    paper_evaluation: PaperEvaluation, jpeg_submission: Path, real_layout_weights: RealLayoutWeights,
    paper_reference: PaperReference, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("EMOGEN_BENCH_HOME", str(paper_evaluation.home))
    out = tmp_path / "results.json"
    code = main([
        "evaluate", str(jpeg_submission), "--protocol", PAPER_CODE, "--per-emotion", str(PER_EMOTION),
        "--weights-override", str(real_layout_weights.override), "--reference-stats", str(paper_reference.path),
        "--device", "cpu", "--workers", "0", "--batch-size", "4", "--quiet", "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == ExitCode.OK
    assert f"protocol {PAPER_CODE}" in printed and PAPER_CODE_BANNER in printed
    document = read_results(out)
    assert document["protocol"] == PAPER_CODE
    assert json.dumps(document["metrics"], sort_keys=True) == json.dumps(
        paper_evaluation.result.to_dict()["metrics"], sort_keys=True
    )


def test_the_cli_refuses_options_the_protocol_does_not_have(
    jpeg_submission: Path, paper_reference: PaperReference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["evaluate", str(jpeg_submission), "--protocol", PAPER_CODE, "--metrics", "kid", "--quiet"])
    assert code == ExitCode.USAGE and "fid, lpips, emo_a, sem_c, sem_d" in capsys.readouterr().err
    code = main([
        "reference-stats", "build", "--protocol", PAPER_CODE, "--split", "train", "--index", str(paper_reference.index),
        "--emoset-root", str(paper_reference.emoset), "--out", str(tmp_path / "ref.npz"), "--quiet",
    ])  # fmt: skip
    assert code == ExitCode.USAGE and "split all" in capsys.readouterr().err
    assert not (tmp_path / "ref.npz").exists()
