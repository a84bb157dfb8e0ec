"""``build_extractors``: weights in the real layouts through an override file, and refusals naming what is missing.

The ResNet-50s and the AlexNet are real-size files with random weights (the
loaders are strict about shapes); the Inception is the small TorchScript with
the NVlabs interface and CLIP is the tiny snapshot, with a 768-d projection so
that the real-layout emotion head (768 -> 8) fits it.
"""

from __future__ import annotations

from pathlib import Path

import checkpoints as ckpt
import lpips
import numpy as np
import pytest
import torch

import emogen_bench.features as features
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, EXTRACTOR_NAMES, METRIC_EXTRACTORS, build_extractors
from emogen_bench.features.lpips import phi_dim
from emogen_bench.hashing import digest_listing, sha256_file
from emogen_bench.task import METRIC_KEYS
from emogen_bench.weights import Overrides, WeightStore, load_registry

PACKAGE_LINEAR = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def _override_file(folder: Path, paths: dict[str, Path]) -> Path:
    override = folder / "override.toml"
    override.write_text("".join(f'[artifacts."{key}"]\npath = "{path}"\n' for key, path in paths.items()))
    return override


def _store(home: Path, override: Path | None = None) -> WeightStore:
    overrides = Overrides.from_toml(override) if override is not None else Overrides()
    return WeightStore(home, offline=True, overrides=overrides)


def _clip_snapshot(folder: Path, projection_dim: int, seed: int = 0) -> Path:
    """The tiny snapshot of ``tests/checkpoints.py`` with another projection size."""
    return ckpt.write_clip_snapshot(folder, seed=seed, projection_dim=projection_dim)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    return {
        "inception-fid": ckpt.write_inception_fid(folder / "inception"),
        "clip-vit-l14": _clip_snapshot(folder / "clip", projection_dim=768),
        "emo-head-clip": ckpt.write_emotion_head(folder / "head"),
        "resnet50-imagenet-v1": ckpt.write_resnet50_imagenet(folder / "imagenet", seed=1),
        "resnet50-places365": ckpt.write_resnet50_places365(folder / "places", seed=2),
        "emo-resnet50-emoset": ckpt.write_emoset_resnet50(folder / "emoset", seed=3),
        "alexnet-lpips-trunk": ckpt.write_alexnet_trunk(folder / "alexnet", seed=4),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, weight_files: dict[str, Path]) -> tuple[dict, WeightStore]:
    folder = tmp_path_factory.mktemp("store")
    store = _store(folder / "home", _override_file(folder, weight_files))
    return build_extractors(EXTRACTOR_NAMES, store), store


def test_every_extractor_is_built_from_the_override(built: tuple[dict, WeightStore], weight_files) -> None:  # type: ignore[no-untyped-def]
    extractors, _ = built
    assert tuple(extractors) == EXTRACTOR_NAMES
    for name, extractor in extractors.items():
        assert extractor.info.name == name and not extractor.info.smoke
        assert tuple(extractor.info.artifacts) == ARTIFACTS_BY_EXTRACTOR[name]
    # each digest is the listing digest of the bytes that were loaded, computed here from the files
    for artifact_id, path in weight_files.items():
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        required = {"config.json", "preprocessor_config.json", "model.safetensors"}
        listing = [(p.name, sha256_file(p)) for p in files if not path.is_dir() or p.name in required]
        owner = next(n for n, ids in ARTIFACTS_BY_EXTRACTOR.items() if artifact_id in ids)
        assert extractors[owner].info.artifacts[artifact_id] == digest_listing(listing), artifact_id
    package = digest_listing([("alex.pth", sha256_file(PACKAGE_LINEAR))])
    assert extractors["lpips"].info.artifacts["lpips-alex-v0.1"] == package


def test_real_layout_extractors_run_with_protocol_shapes(built: tuple[dict, WeightStore]) -> None:
    extractors, _ = built
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(512, 512, 3), (384, 600, 3)]]
    expected_shapes = {
        "inception": {"pool": (2048,)},
        "clip": {"embedding": (768,), "emotion_logits": (8,)},
        "semantic": {"imagenet_max_prob": (), "imagenet_top1": (), "places_max_prob": (), "places_top1": ()},
        "emoset": {"logits": (8,)},
        "lpips": {"phi": (phi_dim(512),)},
    }
    outputs = {}
    for name, extractor in extractors.items():
        assert dict(extractor.info.outputs) == expected_shapes[name], name
        outputs[name] = extractor(torch.stack([extractor.preprocess(image) for image in images]))
        for key, shape in expected_shapes[name].items():
            assert outputs[name][key].shape == (2, *shape), (name, key)
            assert np.isfinite(outputs[name][key]).all(), (name, key)
    semantic = outputs["semantic"]
    assert (semantic["places_max_prob"] >= 1 / 365).all() and (semantic["places_top1"] < 365).all()
    assert (semantic["imagenet_max_prob"] >= 1 / 1000).all() and (semantic["imagenet_top1"] < 1000).all()
    # real-size networks: an image's features do not depend on the images beside it
    for name in ("emoset", "lpips"):
        extractor = extractors[name]
        alone = extractor(extractor.preprocess(images[1])[None])
        assert all(np.array_equal(alone[key][0], value[1]) for key, value in outputs[name].items()), name


def test_missing_weights_name_every_missing_artifact_before_loading(
    tmp_path: Path, weight_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(features, "load_artifact", lambda artifact_id, store: loaded.append(artifact_id))
    store = _store(tmp_path / "home", _override_file(tmp_path, {"inception-fid": weight_files["inception-fid"]}))
    with pytest.raises(WeightsError) as caught:
        build_extractors(["inception", "semantic", "emoset"], store)
    message = str(caught.value)
    for artifact_id in ("resnet50-imagenet-v1", "resnet50-places365", "emo-resnet50-emoset"):
        assert f"weight artifact {artifact_id} is missing" in message
        assert f"emogen-bench weights fetch {artifact_id}" in message
    assert "inception-fid" not in message and message.startswith("3 weight artifact(s)")
    assert loaded == []  # nothing was loaded: the check comes first


def test_one_missing_artifact_gives_the_stores_own_message(tmp_path: Path) -> None:
    store = _store(tmp_path / "home")
    with pytest.raises(WeightsError, match=r"^weight artifact inception-fid is missing: .*inception-2015-12-05\.pt"):
        build_extractors(["inception"], store)


def test_a_corrupt_override_is_refused_when_loading(tmp_path: Path, weight_files: dict[str, Path]) -> None:
    override = tmp_path / "override.toml"
    override.write_text(
        f'[artifacts."clip-vit-l14"]\npath = "{weight_files["clip-vit-l14"]}"\n'
        f'[artifacts."emo-head-clip"]\npath = "{weight_files["emo-head-clip"]}"\nsha256 = "{"0" * 64}"\n'
    )
    with pytest.raises(WeightsError, match="emo-head-clip is corrupt"):
        build_extractors(["clip"], _store(tmp_path / "home", override))


def test_a_head_that_does_not_fit_the_clip_model_is_refused(tmp_path: Path, weight_files: dict[str, Path]) -> None:
    paths = {
        "clip-vit-l14": _clip_snapshot(tmp_path / "clip16", projection_dim=16),
        "emo-head-clip": weight_files["emo-head-clip"],
    }
    store = _store(tmp_path / "home", _override_file(tmp_path, paths))
    with pytest.raises(WeightsError, match=r"emo-head-clip.*768-d.*clip-vit-l14.*16-d"):
        build_extractors(["clip"], store)


def test_unknown_extractor_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown extractor.*fidelity.*expected some of inception"):
        build_extractors(["inception", "fidelity"], _store(tmp_path / "home"))


def test_metric_tables_agree_with_the_weights_registry() -> None:
    assert set(METRIC_EXTRACTORS) == set(METRIC_KEYS)
    assert set(ARTIFACTS_BY_EXTRACTOR) == set(EXTRACTOR_NAMES)
    assert {n for names in METRIC_EXTRACTORS.values() for n in names} == set(EXTRACTOR_NAMES)
    registry = load_registry()
    for metric, names in METRIC_EXTRACTORS.items():  # every metric is declared by an artifact it reads
        used_by = {m for name in names for a in ARTIFACTS_BY_EXTRACTOR[name] for m in registry.get(a).used_by}
        assert metric in used_by, metric
    for name, artifact_ids in ARTIFACTS_BY_EXTRACTOR.items():  # and every artifact serves a metric of its extractor
        metrics = {m for m, names in METRIC_EXTRACTORS.items() if name in names}
        for artifact_id in artifact_ids:
            assert metrics & set(registry.get(artifact_id).used_by), (name, artifact_id)
