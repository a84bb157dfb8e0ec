"""Test-wide guards: no network but loopback, and every cache inside a temporary folder.

The environment variables are set at import time, before any test imports
torch, transformers or huggingface_hub, so no library can reach a user cache.
Also the session-wide end-to-end fixtures (weights in the real layouts behind
an override file, a small submission, reference statistics, one cold
evaluation) shared by ``test_evaluate.py`` and ``test_evaluate_cli.py``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from emogen_bench.config import EvalConfig
    from emogen_bench.results import EvaluationResult

_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="emogen-bench-tests-"))
for _name, _sub in (
    ("HF_HOME", "hf"),
    ("TORCH_HOME", "torch"),
    ("EMOGEN_BENCH_HOME", "emogen-bench"),
    ("XDG_CACHE_HOME", "xdg"),
):
    os.environ[_name] = str(_CACHE_ROOT / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("EMOGEN_BENCH_OFFLINE", None)

#: The shared folder beside the repository (absent on a user's clone).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
OFFICIAL_ARTIFACTS = SHARED / "artifacts" / "emogen-official"


class NetworkBlocked(RuntimeError):
    """Raised when a test tries to reach anything but loopback."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect(self, address, *args, **kwargs)


def _guarded_connect_ex(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect_ex(self, address, *args, **kwargs)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None and not _is_loopback(host):
        raise NetworkBlocked(f"tests may not reach the network: name lookup of {host!r} blocked")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


@pytest.fixture
def official_artifacts() -> Path:
    """The real EmoGen files in ``../shared``; skips where that folder is absent (a user's clone)."""
    if not (OFFICIAL_ARTIFACTS / "SHA256SUMS").is_file():
        pytest.skip(f"the official EmoGen artifacts are not beside the repository ({OFFICIAL_ARTIFACTS})")
    return OFFICIAL_ARTIFACTS


@pytest.fixture
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty benchmark cache folder for one test."""
    home = tmp_path / "bench-home"
    monkeypatch.setenv("EMOGEN_BENCH_HOME", str(home))
    return home


# --- end-to-end evaluation: weights in the real layouts, through an override file --------------------------------

#: Images per emotion in the end-to-end submission: 24 images, so the fixed model batch of 16 is padded once.
E2E_PER_EMOTION = 3
#: Reference images per emotion (split sizes): as many as the submission has, so every KID subset is the whole
#: set, except sadness, whose one extra image makes its KID subsets (and the pooled ones) depend on the seed.
E2E_REFERENCE_SPLITS = {"train": 1, "val": 1, "test": 1}
E2E_REFERENCE_EXTRA = "sadness"


@dataclass(frozen=True)
class RealLayoutWeights:
    """Every weight file the metrics read, written in its real layout with random weights, and an override file.

    ``paths`` maps registry ids to the written file (or snapshot folder);
    ``override`` redirects all of them.  ``lpips-alex-v0.1`` is not written: it
    ships inside the ``lpips`` package, where the store finds it.
    """

    folder: Path
    paths: dict[str, Path]
    override: Path

    def override_for(self, artifact_ids: list[str] | tuple[str, ...], out: Path) -> Path:
        """Write an override file at ``out`` that redirects only ``artifact_ids``."""
        out.write_text("".join(f'[artifacts."{a}"]\npath = "{self.paths[a].as_posix()}"\n' for a in artifact_ids))
        return out


@dataclass(frozen=True)
class E2EEvaluation:
    """One cold evaluation of the end-to-end submission with every metric.

    ``home`` is a benchmark home whose feature cache (``home/"features"``) now
    holds the submission's features, so later evaluations there are warm.
    """

    home: Path
    config: EvalConfig
    result: EvaluationResult


@pytest.fixture(scope="session")
def real_layout_weights(tmp_path_factory: pytest.TempPathFactory) -> RealLayoutWeights:
    """Written once per session (about 450 MB: real-size AlexNet and three ResNet-50s).

    The ResNet classifiers are scaled down so their softmax is not saturated
    (a random trunk's features are large), and the CLIP emotion head has no
    bias, so probabilities and predictions depend on the image.  The Inception
    stand-in has 64-d features: FID's d x d algebra at 2048 would cost about
    30 s per evaluation on 2 cores, and the metric tests cover d = 2048.
    """
    import checkpoints as ckpt

    folder = tmp_path_factory.mktemp("real-layout-weights")
    paths = {
        "inception-fid": ckpt.write_inception_fid(folder / "inception", feature_dim=64),
        "clip-vit-l14": ckpt.write_clip_snapshot(folder / "clip", projection_dim=768),
        "emo-head-clip": ckpt.write_emotion_head(folder / "head", bias_scale=0.0),
        "resnet50-imagenet-v1": ckpt.write_resnet50_imagenet(folder / "imagenet", seed=1, fc_scale=0.01),
        "resnet50-places365": ckpt.write_resnet50_places365(folder / "places", seed=2, fc_scale=0.01),
        "emo-resnet50-emoset": ckpt.write_emoset_resnet50(folder / "emoset", seed=3, fc_scale=0.005),
        "alexnet-lpips-trunk": ckpt.write_alexnet_trunk(folder / "alexnet", seed=4),
    }
    weights = RealLayoutWeights(folder, paths, folder / "override.toml")
    weights.override_for(tuple(paths), weights.override)
    return weights


@pytest.fixture(scope="session")
def e2e_submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic example submission, 8 emotions x 3 images of 256 x 256 (read-only by convention)."""
    from emogen_bench.submission import write_example_submission

    return write_example_submission(tmp_path_factory.mktemp("e2e") / "submission", per_emotion=E2E_PER_EMOTION)


@pytest.fixture(scope="session")
def e2e_reference(tmp_path_factory: pytest.TempPathFactory, real_layout_weights: RealLayoutWeights) -> Path:
    """Reference statistics of a fake EmoSet, built with the override's Inception; returns the ``.npz`` path."""
    from fake_emoset import make_fake_emoset

    from emogen_bench.cache import FeatureCache
    from emogen_bench.data import prepare_emoset
    from emogen_bench.features import build_extractors
    from emogen_bench.reference_stats import build_reference_stats
    from emogen_bench.task import EMOTION_NAMES
    from emogen_bench.weights import open_store

    base = tmp_path_factory.mktemp("e2e-reference")
    splits = {emotion: dict(E2E_REFERENCE_SPLITS) for emotion in EMOTION_NAMES}
    splits[E2E_REFERENCE_EXTRA]["train"] += 1
    make_fake_emoset(base / "emoset", per_split=splits, edge_cases=False, image_size=16)
    prepare_emoset(base / "emoset", base / "index", show_progress=False)
    inception = build_extractors(["inception"], open_store(real_layout_weights.override))["inception"]
    build_reference_stats(
        base / "index", base / "emoset", base / "reference.npz", extractor=inception,
        cache=FeatureCache(enabled=False), num_workers=0, device="cpu", show_progress=False,
    )  # fmt: skip
    return base / "reference.npz"


@pytest.fixture(scope="session")
def e2e_evaluation(
    tmp_path_factory: pytest.TempPathFactory,
    real_layout_weights: RealLayoutWeights,
    e2e_submission: Path,
    e2e_reference: Path,
) -> E2EEvaluation:
    """Every metric, cold, through the override file (loader batch 1, no workers), into a session cache."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.config import EvalConfig
    from emogen_bench.evaluate import evaluate

    home = tmp_path_factory.mktemp("e2e-home")
    config = EvalConfig(
        per_emotion=E2E_PER_EMOTION, reference_stats=e2e_reference, device="cpu", batch_size=1, num_workers=0,
        weights_override=real_layout_weights.override, show_progress=False,
    )  # fmt: skip
    result = evaluate(e2e_submission, config, cache=FeatureCache(root=home / "features"))
    return E2EEvaluation(home, config, result)
