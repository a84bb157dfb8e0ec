"""``emogen_bench.evaluate`` end to end: weights written in the real layouts, loaded through an override file.

Every metric value is checked against an independent computation on the same
images: the models are loaded here straight from the written files with
torchvision, transformers, the ``lpips`` package and TorchScript (not through
the benchmark's loaders), each image is decoded and preprocessed here as the
protocol says, and the metric is computed by brute force (every pair, every
subset) or by clean-fid's own formula.  The real-size networks (ResNet-50s,
AlexNet) are run here on three emotions' images only (:data:`CHECKED_EMOTIONS`),
for time; the overall values of their metrics are checked to be the mean of the
per-emotion ones.  The shared fixtures (weights, the 8 x 3 submission, the
reference statistics and one cold evaluation) are in ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import platform
import re
import shutil
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import checkpoints as ckpt
import lpips
import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet_distance
from cleanfid.resize import make_resizer
from conftest import E2E_PER_EMOTION, E2E_REFERENCE_EXTRA, E2EEvaluation, RealLayoutWeights
from PIL import Image
from tolerances import EPS64, U32, gamma, lpips_bounds, pair_mean_bound, softmax_bound
from torch import nn
from torch.nn import functional as F
from torchvision import models, transforms
from transformers import CLIPModel

import emogen_bench.evaluate as evaluate_module
import emogen_bench.pipeline as pipeline
from emogen_bench.cache import LAYOUT, FeatureCache
from emogen_bench.config import EvalConfig
from emogen_bench.errors import ExitCode, WeightsError
from emogen_bench.evaluate import InvalidSubmissionError, evaluate
from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, EXTRACTOR_NAMES, build_extractors
from emogen_bench.features.base import run_fixed_batches
from emogen_bench.hashing import digest_listing, sha256_file
from emogen_bench.reference_stats import load_reference_stats
from emogen_bench.results import EvaluationResult, read_results
from emogen_bench.submission import validate_submission
from emogen_bench.task import DEFAULT_SEED, EMOTION_NAMES, METRIC_KEYS, PROTOCOL
from emogen_bench.weights import open_store

DOCS_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
POSITIVE_IDS = (0, 1, 2, 3)  # amusement, awe, contentment, excitement (PROTOCOL.md section 1)
#: The emotions the real-size networks (three ResNet-50s, AlexNet-LPIPS) are run on here, to keep the test quick:
#: the first, the one whose images straddle the two fixed model batches of 16 (positions 15-17), and the last (in
#: the zero-padded batch).  The tiny Inception and CLIP run on every image.
CHECKED_EMOTIONS = ("amusement", "disgust", "sadness")
#: The override artifacts; the LPIPS linear layers come from the lpips package (official bytes).
OVERRIDDEN = (
    "inception-fid", "clip-vit-l14", "emo-head-clip", "resnet50-imagenet-v1", "resnet50-places365",
    "emo-resnet50-emoset", "alexnet-lpips-trunk",
)  # fmt: skip


# --- independent computations ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Direct:
    """Per-image model outputs computed here, rows in canonical order (emotion id, then file name).

    The ``checked_*`` arrays cover only the images of :data:`CHECKED_EMOTIONS`.
    """

    emotions: np.ndarray  # (n,) emotion names
    inception: np.ndarray  # (n, d) pool features
    clip_embedding: np.ndarray  # (n, 768)
    clip_probs: np.ndarray  # (n, 8)
    checked_emotions: np.ndarray  # (m,) emotion names
    emoset_probs: np.ndarray  # (m, 8)
    imagenet_max: np.ndarray  # (m,)
    places_max: np.ndarray  # (m,)
    lpips_pairs: dict[str, np.ndarray]  # checked emotion -> LPIPS of every distinct pair
    lpips_bounds: tuple[float, float]  # tolerances.lpips_bounds: (relative, absolute) per pair


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()


def _fixed_batches(network: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> np.ndarray:
    """``network`` on ``inputs`` in the pipeline's fixed batches of 16 (zero-padded): the same float32 module on the
    same input then gives the pipeline's outputs bit for bit on any CPU (batch-composition independence is asserted
    in ``test_features_*``), so only the float64 arithmetic after it differs between the two routes."""
    return run_fixed_batches(lambda batch: {"out": network(batch)}, inputs)["out"]


def _resnet_input(images: list[Image.Image], mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    pipeline_ = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    return torch.stack([pipeline_(image) for image in images])


def _lpips_network(trunk_file: Path) -> lpips.LPIPS:
    """The lpips package's own AlexNet LPIPS v0.1 (its linear layers), trunk weights copied in from ``trunk_file``."""
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=``; nothing is downloaded
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    alexnet = models.alexnet()
    alexnet.load_state_dict(torch.load(trunk_file, map_location="cpu"))
    for part in (network.net.slice1, network.net.slice2, network.net.slice3, network.net.slice4, network.net.slice5):
        for name, layer in part.named_children():  # lpips keeps torchvision's index as the layer's name
            layer.load_state_dict(alexnet.features[int(name)].state_dict())
    return network.eval()


def _emoset_classifier(path: Path) -> nn.Module:
    """EmoGen's encoder rebuilt from its state dict: torchvision trunk (``cnn.*``) -> fc_1 -> ReLU -> fc_2.2."""
    state = torch.load(path, map_location="cpu")
    trunk = models.resnet50()
    trunk.load_state_dict({k.removeprefix("cnn."): v for k, v in state.items() if k.startswith("cnn.")})
    trunk.fc = nn.Identity()
    fc_1, fc_2 = nn.Linear(2048, 768), nn.Linear(768, 8)
    fc_1.load_state_dict({"weight": state["fc_1.weight"], "bias": state["fc_1.bias"]})
    fc_2.load_state_dict({"weight": state["fc_2.2.weight"], "bias": state["fc_2.2.bias"]})
    return nn.Sequential(trunk, fc_1, nn.ReLU(), fc_2).eval()


@pytest.fixture(scope="module")
def direct(real_layout_weights: RealLayoutWeights, e2e_submission: Path) -> Direct:
    paths = real_layout_weights.paths
    files = [path for emotion in EMOTION_NAMES for path in sorted((e2e_submission / emotion).glob("*.png"))]
    emotions = np.array([path.parent.name for path in files])
    images = [Image.open(path).convert("RGB") for path in files]
    arrays = [np.array(image) for image in images]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; the real file is TorchScript
        inception = torch.jit.load(str(paths["inception-fid"]), map_location="cpu").eval()
        resize = make_resizer("PIL", False, "bicubic", (299, 299))  # clean-fid's "clean" resize
        x = torch.from_numpy(np.stack([resize(a) for a in arrays]).transpose(0, 3, 1, 2).copy())
        # in the pipeline's fixed batches: equal inputs give the pipeline's features bit for bit on any CPU, so the
        # FIDs compared below differ by float64 rounding only, not by float32 kernels
        pool = run_fixed_batches(lambda b: {"pool": inception.layers((b - 128) / 128).reshape(b.shape[0], -1)},
                                 x.float())["pool"].astype(np.float64)  # fmt: skip

        clip = CLIPModel.from_pretrained(paths["clip-vit-l14"], local_files_only=True).eval()
        processor = ckpt.pil_clip_processor(paths["clip-vit-l14"])  # transformers' PIL pipeline, as 4.x
        pixels = processor(images=arrays, return_tensors="pt")["pixel_values"]
        head = torch.load(paths["emo-head-clip"], map_location="cpu")

        def clip_forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
            """The vision tower and projection, then the head as the pipeline's nn.Linear applies it (F.linear)."""
            embedding = clip.visual_projection(clip.vision_model(pixel_values=batch).pooler_output)
            return {"embedding": embedding, "logits": F.linear(embedding, head["fc.weight"], head["fc.bias"])}

        clip_out = run_fixed_batches(clip_forward, pixels)

        checked = [i for i in range(len(files)) if emotions[i] in CHECKED_EMOTIONS]
        some = [images[i] for i in checked]
        imagenet = models.resnet50()
        imagenet.load_state_dict(torch.load(paths["resnet50-imagenet-v1"], map_location="cpu"))
        places = models.resnet50(num_classes=365)
        checkpoint = torch.load(paths["resnet50-places365"], map_location="cpu")
        places.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()})
        semantic_input = _resnet_input(some, IMAGENET_MEAN, IMAGENET_STD)
        imagenet_max = _softmax(_fixed_batches(imagenet.eval(), semantic_input)).max(axis=1)
        places_max = _softmax(_fixed_batches(places.eval(), semantic_input)).max(axis=1)
        emoset = _emoset_classifier(paths["emo-resnet50-emoset"])
        emoset_logits = _fixed_batches(emoset, _resnet_input(some, (0.5,) * 3, (0.5,) * 3))

        network = _lpips_network(paths["alexnet-lpips-trunk"])
        pairs, owners = [], []
        for emotion in CHECKED_EMOTIONS:
            chosen = [i for i in range(len(files)) if emotions[i] == emotion]
            assert all(images[i].size == (256, 256) for i in chosen)  # square: resize to 512, nothing to crop
            resized = [np.asarray(images[i].resize((512, 512), Image.BICUBIC)) for i in chosen]
            batch = torch.cat([lpips.im2tensor(array) for array in resized])
            for first, second in itertools.combinations(range(len(chosen)), 2):
                pairs.append(torch.stack([batch[first], batch[second]]))
                owners.append(emotion)
        # every pair's two sides each in one fixed batch of 16 through the package's own LPIPS: the AlexNet features
        # are the pipeline's bit for bit, and the rest is bounded by tolerances.lpips_bounds
        distances = _fixed_batches(lambda b: network(b[:, 0].contiguous(), b[:, 1].contiguous()).flatten(),
                                   torch.stack(pairs)).astype(np.float64)  # fmt: skip
        lpips_pairs = {emotion: distances[np.array(owners) == emotion] for emotion in CHECKED_EMOTIONS}
    return Direct(
        emotions=emotions,
        inception=pool,
        clip_embedding=clip_out["embedding"].astype(np.float64),
        clip_probs=_softmax(clip_out["logits"]),
        checked_emotions=emotions[checked],
        emoset_probs=_softmax(emoset_logits),
        imagenet_max=imagenet_max,
        places_max=places_max,
        lpips_pairs=lpips_pairs,
        lpips_bounds=lpips_bounds(network, 512, E2E_PER_EMOTION),
    )


def _brute_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, summing every kernel value pair by pair, float64."""
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def _seeded_kid(generated: np.ndarray, reference: np.ndarray, seed: int, subsets: int) -> np.ndarray:
    """The subset estimates with the documented seeding: per subset, reference indices then generated ones."""
    rng = np.random.default_rng(seed)
    size = min(1000, len(generated), len(reference))
    estimates = []
    for _ in range(subsets):
        ri = rng.choice(len(reference), size, replace=False)
        gi = rng.choice(len(generated), size, replace=False)
        x, y = reference[ri].astype(np.float64), generated[gi]
        kernel = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
        kxx, kyy = kernel(x, x), kernel(y, y)
        estimates.append(
            (kxx.sum() - np.trace(kxx)) / (size * (size - 1))
            + (kyy.sum() - np.trace(kyy)) / (size * (size - 1))
            - 2 * kernel(x, y).mean()
        )
    return np.array(estimates)


def _metrics(result: EvaluationResult) -> str:
    """The metrics part of a results document as canonical JSON text (for bitwise comparisons)."""
    return json.dumps(result.to_dict()["metrics"], sort_keys=True)


def _documented_top_level_keys() -> set[str]:
    keys = set()
    for line in DOCS_RESULTS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            keys.update(name.split(".")[0] for name in re.findall(r"`([^`]+)`", first_cell))
    return keys


# --- 1. the results document -------------------------------------------------------------------------------------


def test_results_document_has_every_documented_key_and_its_provenance(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, e2e_reference: Path, real_layout_weights: RealLayoutWeights,
    tmp_path: Path,
) -> None:  # fmt: skip
    document = e2e_evaluation.result.to_dict()
    documented = _documented_top_level_keys()
    assert {"schema", "protocol", "artifacts", "metrics", "not_computed"} <= documented  # the table was parsed
    assert set(document) == documented
    assert document["schema"] == "emogen-bench/results" and document["schema_version"] == 1
    assert document["protocol"] == PROTOCOL and document["smoke"] is False
    assert document["run"]["kind"] == "reduced" and document["run"]["per_emotion"] == E2E_PER_EMOTION
    assert f"{E2E_PER_EMOTION} images per emotion" in document["run"]["label"]

    report = validate_submission(e2e_submission, per_emotion=E2E_PER_EMOTION, show_progress=False)
    submission = document["submission"]
    assert submission["digest"] == report.digest
    assert submission["counts"] == {emotion: E2E_PER_EMOTION for emotion in EMOTION_NAMES}
    assert submission["n_images"] == 8 * E2E_PER_EMOTION
    expected_manifest = sorted(
        [f"{p.parent.name}/{p.name}", sha256_file(p)] for p in e2e_submission.glob("*/*.png")
    )  # fmt: skip
    assert sorted(submission["manifest"]) == expected_manifest

    assert document["reference"]["sha256"] == sha256_file(e2e_reference)
    assert document["reference"]["path"] == str(e2e_reference)

    needed = {artifact for ids in ARTIFACTS_BY_EXTRACTOR.values() for artifact in ids}
    assert set(document["artifacts"]) == needed
    for artifact_id in OVERRIDDEN:
        entry = document["artifacts"][artifact_id]
        assert entry["overridden"] is True and entry["official"] is False, artifact_id  # random bytes
        assert entry["path"] == str(real_layout_weights.paths[artifact_id])
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"])
        path = real_layout_weights.paths[artifact_id]
        if path.is_file():
            assert entry["digest"] == digest_listing([(path.name, sha256_file(path))]), artifact_id
    package = document["artifacts"]["lpips-alex-v0.1"]
    assert package["official"] is True and package["overridden"] is False
    assert document["official_weights"] is False

    environment = document["environment"]
    assert environment["python"] == platform.python_version() and environment["device"] == "cpu"
    for package_name in ("torch", "numpy", "scipy", "transformers", "lpips", "clean-fid"):
        assert environment["packages"][package_name] == metadata.version(package_name)
    assert document["seed"] == DEFAULT_SEED == document["config"]["seed"]
    assert document["config"]["batch_size"] == 1 and document["config"]["num_workers"] == 0
    assert {"validate", "load_models", "metrics", "extract.total"} <= set(document["timings"])
    assert any(key.startswith("extract.model.") for key in document["timings"])  # a cold run computes
    assert all(seconds >= 0 for seconds in document["timings"].values())

    assert document["not_computed"] == {}
    assert list(document["metrics"]["overall"]) == list(METRIC_KEYS)
    assert list(document["metrics"]["per_emotion"]) == list(EMOTION_NAMES)
    for scope, values, n in [("overall", document["metrics"]["overall"], 8 * E2E_PER_EMOTION)] + [
        (emotion, values, E2E_PER_EMOTION) for emotion, values in document["metrics"]["per_emotion"].items()
    ]:
        assert list(values) == list(METRIC_KEYS), scope
        for key, entry in values.items():
            assert {"value", "ci95", "n"} <= set(entry) and entry["n"] == n, (scope, key)
            assert np.isfinite(entry["value"]), (scope, key)
    assert document["metrics"]["per_emotion"]["awe"]["fid"]["biased"] is True

    written = e2e_evaluation.result.write(tmp_path / "results.json")  # strict JSON: no NaN anywhere
    assert read_results(written) == json.loads(json.dumps(document))


# --- 2. values against independent computations ------------------------------------------------------------------


def test_sem_d_is_the_brute_force_pairwise_mse_of_clip_embeddings(
    e2e_evaluation: E2EEvaluation, direct: Direct
) -> None:
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    per_emotion: dict[str, float] = {}
    tol: dict[str, float] = {}
    for emotion in EMOTION_NAMES:
        x = direct.clip_embedding[direct.emotions == emotion]
        pairs = [np.mean((x[i] - x[j]) ** 2) for i, j in itertools.combinations(range(len(x)), 2)]
        per_emotion[emotion] = float(np.mean(pairs))
        # the pipeline's embeddings bit for bit (fixed batches): streaming against brute-force float64 sums, / dim
        tol[emotion] = pair_mean_bound(x) / x.shape[1] + gamma(2, EPS64) * per_emotion[emotion]
        assert abs(metrics["per_emotion"][emotion]["sem_d"]["value"] - per_emotion[emotion]) <= tol[emotion]
    overall = np.mean(list(per_emotion.values()))  # a mean of 8 adds gamma_9 on each side
    tolerance = np.mean(list(tol.values())) + 2 * gamma(9, EPS64) * overall
    assert abs(metrics["overall"]["sem_d"]["value"] - overall) <= tolerance


def _check_emo_a(entry: dict, probs: np.ndarray, targets: np.ndarray) -> None:
    """One Emo-A entry (a scope) against probabilities computed here for the same images.

    The logits are the pipeline's bit for bit (fixed batches), so each side's float64 softmax is within
    ``softmax_bound(., EPS64)`` of the exact softmax of the same logits: ``tol`` bounds their difference.
    """
    tol = 2 * softmax_bound(probs, EPS64)
    predicted = probs.argmax(axis=1)
    sorted_probs = np.sort(probs, axis=1)
    assert np.all(sorted_probs[:, -1] - sorted_probs[:, -2] > 2 * tol.max(axis=1))  # no tie rounding could flip
    assert entry["value"] == np.mean(predicted == targets)
    assert entry["n"] == len(targets)
    target_probs = probs[np.arange(len(targets)), targets]  # a mean of n adds gamma_{n+1} on each side
    tolerance = tol[np.arange(len(targets)), targets].mean() + 2 * gamma(len(targets) + 1, EPS64) * target_probs.mean()
    assert abs(entry["mean_target_probability"] - target_probs.mean()) <= tolerance
    mass = probs[:, list(POSITIVE_IDS)].sum(axis=1) - np.delete(probs, list(POSITIVE_IDS), axis=1).sum(axis=1)
    assert np.all(np.abs(mass) > tol.sum(axis=1) + 4 * gamma(4, EPS64))  # each side's sums of 4 add gamma_4
    assert entry["polarity_accuracy"] == np.mean((mass >= 0) == (targets < len(POSITIVE_IDS)))


def _targets(emotions: np.ndarray) -> np.ndarray:
    return np.array([EMOTION_NAMES.index(emotion) for emotion in emotions])


def test_emo_a_is_the_argmax_of_the_clip_head_on_directly_computed_embeddings(
    e2e_evaluation: E2EEvaluation, direct: Direct
) -> None:
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    targets = _targets(direct.emotions)
    predicted = direct.clip_probs.argmax(axis=1)
    assert len(set(predicted.tolist())) > 1  # the bias-free head makes the prediction depend on the image
    _check_emo_a(metrics["overall"]["emo_a"], direct.clip_probs, targets)
    confusion = np.zeros((8, 8), dtype=int)
    np.add.at(confusion, (targets, predicted), 1)
    assert metrics["overall"]["emo_a"]["confusion"] == confusion.tolist()
    for emotion in EMOTION_NAMES:
        rows = direct.emotions == emotion
        _check_emo_a(metrics["per_emotion"][emotion]["emo_a"], direct.clip_probs[rows], targets[rows])
        assert metrics["per_emotion"][emotion]["emo_a"]["predicted"] == confusion[EMOTION_NAMES.index(emotion)].tolist()


def test_emo_a_resnet50_is_the_argmax_of_the_directly_run_emoset_classifier(
    e2e_evaluation: E2EEvaluation, direct: Direct
) -> None:
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    targets = _targets(direct.checked_emotions)
    predicted = direct.emoset_probs.argmax(axis=1)
    overall = metrics["overall"]["emo_a_resnet50"]
    for emotion in CHECKED_EMOTIONS:
        rows = direct.checked_emotions == emotion
        entry = metrics["per_emotion"][emotion]["emo_a_resnet50"]
        _check_emo_a(entry, direct.emoset_probs[rows], targets[rows])
        row = np.bincount(predicted[rows], minlength=8).tolist()
        assert entry["predicted"] == row == overall["confusion"][EMOTION_NAMES.index(emotion)]
    per_emotion = [metrics["per_emotion"][emotion]["emo_a_resnet50"] for emotion in EMOTION_NAMES]
    assert overall["value"] == pytest.approx(np.mean([entry["value"] for entry in per_emotion]), abs=1e-15)
    assert overall["mean_target_probability"] == pytest.approx(
        np.mean([entry["mean_target_probability"] for entry in per_emotion]), rel=1e-12
    )  # equal counts: the overall mean is the mean of the emotions' means


def test_sem_c_is_the_mean_of_the_larger_direct_max_softmax(e2e_evaluation: E2EEvaluation, direct: Direct) -> None:
    clarity = np.maximum(direct.imagenet_max, direct.places_max)
    assert clarity.std() > 1e-3 and clarity.max() < 0.999  # not saturated: the value depends on the images
    # the pipeline's logits bit for bit (fixed batches); its softmax is float32, this one float64; max() is
    # 1-Lipschitz, so each image's clarity is within the larger of the two classifiers' bounds
    tol = np.maximum(
        *(softmax_bound(p[:, None], U32, classes=c)[:, 0] + softmax_bound(p[:, None], EPS64, classes=c)[:, 0]
          for p, c in ((direct.imagenet_max, 1000), (direct.places_max, 365)))
    )  # fmt: skip
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    for emotion in CHECKED_EMOTIONS:
        rows = direct.checked_emotions == emotion
        expected = clarity[rows].mean()  # a float64 mean of n on each side: gamma_{n+1}
        tolerance = tol[rows].mean() + 2 * gamma(int(rows.sum()) + 1, EPS64) * expected
        assert abs(metrics["per_emotion"][emotion]["sem_c"]["value"] - expected) <= tolerance
    overall = metrics["overall"]["sem_c"]
    per_emotion = [metrics["per_emotion"][emotion]["sem_c"]["value"] for emotion in EMOTION_NAMES]
    assert overall["value"] == pytest.approx(np.mean(per_emotion), rel=1e-12)
    lo, hi = overall["ci95"]
    assert lo < overall["value"] < hi


def test_lpips_is_the_mean_of_lpips_package_distances_over_all_pairs(
    e2e_evaluation: E2EEvaluation, direct: Direct
) -> None:
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    relative, absolute = direct.lpips_bounds
    for emotion, pairs in direct.lpips_pairs.items():
        assert len(pairs) == E2E_PER_EMOTION * (E2E_PER_EMOTION - 1) // 2
        # the same AlexNet features (fixed batches): the package's float32 head against the float64 phi sums, then
        # this float64 mean of the pairs (gamma_{P+1})
        tolerance = (relative / (1 - relative) + gamma(len(pairs) + 1, EPS64)) * pairs.mean() + absolute
        assert abs(metrics["per_emotion"][emotion]["lpips"]["value"] - pairs.mean()) <= tolerance
    per_emotion = [metrics["per_emotion"][emotion]["lpips"]["value"] for emotion in EMOTION_NAMES]
    assert metrics["overall"]["lpips"]["value"] == pytest.approx(np.mean(per_emotion), rel=1e-12)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # inside clean-fid
def test_fid_matches_clean_fid_on_directly_computed_inception_statistics(
    e2e_evaluation: E2EEvaluation, direct: Direct, e2e_reference: Path
) -> None:
    reference = load_reference_stats(e2e_reference)
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    x = direct.inception
    pooled = cleanfid_frechet_distance(
        x.mean(axis=0), np.cov(x, rowvar=False), reference.pooled.mu, reference.pooled.sigma
    )  # fmt: skip
    assert metrics["overall"]["fid"]["value"] == pytest.approx(pooled, rel=1e-6)
    lo, hi = metrics["overall"]["fid"]["ci95"]
    assert lo <= hi
    for emotion in EMOTION_NAMES:
        rows = x[direct.emotions == emotion]
        stats = reference.per_emotion[emotion]
        expected = cleanfid_frechet_distance(rows.mean(axis=0), np.cov(rows, rowvar=False), stats.mu, stats.sigma)
        assert metrics["per_emotion"][emotion]["fid"]["value"] == pytest.approx(expected, rel=1e-6)
        assert metrics["per_emotion"][emotion]["fid"]["ci95"] is None


def test_kid_matches_brute_force_mmd(e2e_evaluation: E2EEvaluation, direct: Direct, e2e_reference: Path) -> None:
    reference = load_reference_stats(e2e_reference)
    metrics = e2e_evaluation.result.to_dict()["metrics"]
    x = direct.inception
    for emotion in EMOTION_NAMES:
        sample = reference.kid_sample[emotion].astype(np.float64)
        generated = x[direct.emotions == emotion]
        entry = metrics["per_emotion"][emotion]["kid"]
        assert entry["subset_size"] == min(len(generated), len(sample)) and entry["subsets"] == 100
        if emotion == E2E_REFERENCE_EXTRA:
            assert len(sample) == len(generated) + 1
            estimates = _seeded_kid(generated, sample, DEFAULT_SEED, 100)
            assert entry["value"] == pytest.approx(estimates.mean(), rel=1e-9)
            continue
        # as many reference as generated images: every subset is the whole of both sets
        assert len(sample) == len(generated)
        assert entry["value"] == pytest.approx(_brute_mmd2(sample, generated), rel=1e-9)
        assert entry["std"] == pytest.approx(0.0, abs=1e-12)
    estimates = _seeded_kid(x, reference.kid_pooled, DEFAULT_SEED, 100)
    overall = metrics["overall"]["kid"]
    assert overall["value"] == pytest.approx(estimates.mean(), rel=1e-9)
    assert overall["std"] == pytest.approx(estimates.std(ddof=1), rel=1e-6)
    assert overall["ci95"] == pytest.approx(np.quantile(estimates, [0.025, 0.975]).tolist(), rel=1e-9)


# --- 3. determinism ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractors(real_layout_weights: RealLayoutWeights) -> dict:
    """The real-layout extractors, built once for the warm re-evaluations of this module."""
    return build_extractors(EXTRACTOR_NAMES, open_store(real_layout_weights.override))


def test_warm_reevaluation_reads_no_image_and_gives_identical_metrics(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, extractors: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_root = e2e_evaluation.home / "features"
    before = {p: p.stat().st_mtime_ns for p in cache_root.rglob("*") if p.is_file()}

    def no_reading(path: Path, sha256: str) -> np.ndarray:
        raise AssertionError(f"a warm re-evaluation read {path}")

    monkeypatch.setattr(pipeline, "read_image", no_reading)
    again = evaluate(e2e_submission, e2e_evaluation.config, extractors=extractors, cache=FeatureCache(root=cache_root))
    assert _metrics(again) == _metrics(e2e_evaluation.result)
    assert not [key for key in again.timings if key.startswith("extract.model.")]
    assert {p: p.stat().st_mtime_ns for p in cache_root.rglob("*") if p.is_file()} == before  # nothing written
    assert again.to_dict()["artifacts"] == e2e_evaluation.result.to_dict()["artifacts"]
    n = again.submission["n_images"]
    assert all(counts["computed"] == 0 and counts["cached"] == n for counts in again.features.values())
    assert all(counts["computed"] == n for counts in e2e_evaluation.result.features.values())
    assert again.metrics_cached and not e2e_evaluation.result.metrics_cached
    assert "metrics" not in again.timings  # the metric values themselves came from the cache


def test_features_cached_metrics_not_recomputes_the_maths_without_reading_an_image(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, extractors: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged or removed metric-values entry is a miss: the maths runs again on the cached features."""
    cache_root = e2e_evaluation.home / "features"
    entries = [p for p in (cache_root / LAYOUT / "summaries").rglob("metrics-*.json")]
    assert entries
    saved = {p: p.read_bytes() for p in entries}
    try:
        for path in entries:
            path.write_text('{"overall": 1}', encoding="utf-8")

        def no_reading(path: Path, sha256: str) -> np.ndarray:
            raise AssertionError(f"a warm re-evaluation read {path}")

        monkeypatch.setattr(pipeline, "read_image", no_reading)
        cache = FeatureCache(root=cache_root)
        again = evaluate(e2e_submission, e2e_evaluation.config, extractors=extractors, cache=cache)
        assert not again.metrics_cached and "metrics" in again.timings
        assert _metrics(again) == _metrics(e2e_evaluation.result)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_a_warm_reevaluation_from_the_weights_store_loads_no_model(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emogen_bench.evaluate as evaluate_module

    first = evaluate(e2e_submission, e2e_evaluation.config, cache=FeatureCache(root=e2e_evaluation.home / "features"))

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm re-evaluation built the models")

    monkeypatch.setattr(evaluate_module, "build_extractors", no_loading)
    again = evaluate(e2e_submission, e2e_evaluation.config, cache=FeatureCache(root=e2e_evaluation.home / "features"))
    assert again.metrics_cached and "load_models" not in again.timings
    assert _metrics(again) == _metrics(first) == _metrics(e2e_evaluation.result)
    assert again.to_dict()["artifacts"] == first.to_dict()["artifacts"]


def test_loader_batch_size_and_workers_do_not_change_any_number(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, extractors: dict
) -> None:
    # Every extractor goes through the same loader and fixed model batches; the two ResNet-50 extractors
    # (the slowest on a CPU) are left out here, LPIPS' streaming reduction is kept in.
    metrics = ("fid", "kid", "lpips", "emo_a", "sem_d")
    config = dataclasses.replace(e2e_evaluation.config, metrics=metrics, batch_size=7, num_workers=2, cache=False)
    uncached = evaluate(e2e_submission, config, extractors=extractors)  # cache off: every feature computed again
    assert {f"extract.model.{name}" for name in ("inception", "clip", "lpips")} <= set(uncached.timings)
    first = e2e_evaluation.result.to_dict()["metrics"]
    expected = {
        "overall": {key: first["overall"][key] for key in metrics},
        "per_emotion": {e: {key: values[key] for key in metrics} for e, values in first["per_emotion"].items()},
    }
    assert _metrics(uncached) == json.dumps(expected, sort_keys=True)
    # extractors passed in keep their provenance: the same bytes as the override file's
    artifacts = e2e_evaluation.result.to_dict()["artifacts"]
    assert uncached.to_dict()["artifacts"] == {key: artifacts[key] for key in uncached.artifacts}


def test_the_seed_moves_only_the_seeded_numbers(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, extractors: dict
) -> None:
    config = dataclasses.replace(e2e_evaluation.config, seed=DEFAULT_SEED + 1)
    cache = FeatureCache(root=e2e_evaluation.home / "features")
    other = evaluate(e2e_submission, config, extractors=extractors, cache=cache).to_dict()
    first = e2e_evaluation.result.to_dict()
    assert other["seed"] == DEFAULT_SEED + 1 and other["config"]["seed"] == DEFAULT_SEED + 1
    for scope in ["overall", *EMOTION_NAMES]:
        new = other["metrics"]["overall"] if scope == "overall" else other["metrics"]["per_emotion"][scope]
        old = first["metrics"]["overall"] if scope == "overall" else first["metrics"]["per_emotion"][scope]
        for key in ("fid", "lpips", "emo_a", "emo_a_resnet50", "sem_d"):
            assert new[key] == old[key], (scope, key)  # no randomness in these
        assert new["sem_c"]["value"] == old["sem_c"]["value"]
    # the bootstrap resamples images (with 3 images an emotion's interval is their range, whatever the seed)
    assert other["metrics"]["overall"]["sem_c"]["ci95"] != first["metrics"]["overall"]["sem_c"]["ci95"]
    # KID subsets: seeded where the reference is larger than the generated set (sadness, and pooled). The
    # mean over 100 subsets moves with the seed; sadness has only 4 distinct subsets (3 of 4 reference
    # vectors), so its 2.5/97.5 percentiles are the extreme subsets under most seeds: only its value is compared.
    new, old = other["metrics"]["overall"]["kid"], first["metrics"]["overall"]["kid"]
    assert new["ci95"] != old["ci95"] and new["value"] != old["value"]
    new = other["metrics"]["per_emotion"][E2E_REFERENCE_EXTRA]["kid"]
    assert new["value"] != first["metrics"]["per_emotion"][E2E_REFERENCE_EXTRA]["kid"]["value"]
    assert other["metrics"]["per_emotion"]["awe"]["kid"]["value"] == pytest.approx(
        first["metrics"]["per_emotion"]["awe"]["kid"]["value"], rel=1e-9, abs=1e-15
    )  # whole sets: the seed only permutes them


# --- 4. refusals, and what is computed when something is absent --------------------------------------------------


def _copy_without(submission: Path, emotion: str, out: Path) -> Path:
    shutil.copytree(submission, out)
    shutil.rmtree(out / emotion)
    return out


def test_an_invalid_submission_is_refused_before_anything_is_loaded_or_computed(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _copy_without(e2e_submission, "fear", tmp_path / "broken")
    loaded: list[object] = []
    monkeypatch.setattr(evaluate_module, "build_extractors", lambda *a, **k: loaded.append(a))
    with pytest.raises(InvalidSubmissionError) as caught:
        evaluate(broken, e2e_evaluation.config, cache=FeatureCache(root=tmp_path / "cache"))
    error = caught.value
    assert error.exit_code == ExitCode.INVALID
    assert not error.report.valid
    problems = [p for p in error.report.errors if "fear" in p.path or "fear" in p.message]
    assert problems, error.report.errors
    assert f"{problems[0].code}: {problems[0].path}" in str(error)
    assert f"emogen-bench validate {error.report.path}" in str(error)
    assert loaded == [] and not (tmp_path / "cache").exists()


def test_missing_weights_are_named_with_the_fetch_command_before_any_image_is_read(
    e2e_submission: Path, bench_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "read_image", lambda *a: pytest.fail("an image was read"))
    config = dataclasses.replace(
        EvalConfig(), per_emotion=E2E_PER_EMOTION, device="cpu", num_workers=0, show_progress=False
    )
    with pytest.raises(WeightsError) as caught:
        evaluate(e2e_submission, config, cache=FeatureCache(root=tmp_path / "cache"))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.WEIGHTS
    for artifact_id in OVERRIDDEN:
        if artifact_id == "inception-fid":  # no reference statistics, so FID/KID are not run
            continue
        assert f"weight artifact {artifact_id} is missing" in message
        assert f"emogen-bench weights fetch {artifact_id}" in message
    assert "inception-fid" not in message
    assert not (tmp_path / "cache").exists()


def test_without_reference_statistics_fid_and_kid_are_not_computed_and_the_rest_is(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, extractors: dict
) -> None:
    config = dataclasses.replace(e2e_evaluation.config, reference_stats=None)
    result = evaluate(
        e2e_submission, config, extractors=extractors, cache=FeatureCache(root=e2e_evaluation.home / "features")
    ).to_dict()
    assert set(result["not_computed"]) == {"fid", "kid"}
    for reason in result["not_computed"].values():
        assert "emogen-bench reference-stats build" in reason
    assert result["reference"] is None
    rest = [key for key in METRIC_KEYS if key not in ("fid", "kid")]
    assert list(result["metrics"]["overall"]) == rest
    first = e2e_evaluation.result.to_dict()["metrics"]
    for key in rest:
        assert result["metrics"]["overall"][key] == first["overall"][key]
    assert "inception-fid" not in result["artifacts"]


def test_sem_d_alone_loads_only_clip_and_its_head(
    e2e_evaluation: E2EEvaluation, e2e_submission: Path, real_layout_weights: RealLayoutWeights, bench_home: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    # only CLIP and the head are available: the Inception, ResNets and AlexNet are missing
    override = real_layout_weights.override_for(("clip-vit-l14", "emo-head-clip"), tmp_path / "override.toml")
    config = dataclasses.replace(
        e2e_evaluation.config, metrics=("sem_d",), weights_override=override, reference_stats=None
    )
    result = evaluate(e2e_submission, config, cache=FeatureCache(root=tmp_path / "cache")).to_dict()
    assert list(result["metrics"]["overall"]) == ["sem_d"]
    assert all(list(values) == ["sem_d"] for values in result["metrics"]["per_emotion"].values())
    assert set(result["artifacts"]) == {"clip-vit-l14", "emo-head-clip"}
    assert result["not_computed"] == {}
    first = e2e_evaluation.result.to_dict()["metrics"]
    assert result["metrics"]["overall"]["sem_d"] == first["overall"]["sem_d"]  # cold, other cache: same bits
