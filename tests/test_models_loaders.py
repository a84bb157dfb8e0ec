"""Loaders against files written in the real layouts (tests/checkpoints.py), and against broken files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import checkpoints as ckpt
import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import alexnet, resnet50

from emogen_bench.artifacts import (
    AttrTables,
    export_attr_tables_json,
    load_attr_coefficients,
    load_attr_tables_json,
    load_attr_vocabulary,
    load_emo_space,
)
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.hashing import sha256_file
from emogen_bench.models import LOADERS
from emogen_bench.models._state_dict import compare_state_dicts, strip_prefix, unwrap_state_dict
from emogen_bench.models.emoset_resnet import EmoSetResNet50, load_emoset_resnet50
from emogen_bench.models.emotion_head import EmotionHead, load_emotion_head
from emogen_bench.models.inception import load_inception
from emogen_bench.models.lpips_alex import load_alexnet, load_lpips_alex, load_lpips_linear
from emogen_bench.models.resnet import load_resnet50_imagenet, load_resnet50_places365
from emogen_bench.task import EMOTION_NAMES

LPIPS_PACKAGE_ALEX = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def _garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a checkpoint\x00\x01\x02" * 10)
    return path


def _assert_same_state(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


# ---- shared helpers --------------------------------------------------------------------------------


def test_compare_state_dicts_lists_missing_unexpected_and_shapes() -> None:
    expected = {f"k{i}": torch.zeros(2) for i in range(8)} | {"bn.num_batches_tracked": torch.tensor(0)}
    found = {f"k{i}": torch.zeros(2) for i in range(1, 7)} | {"k6": torch.zeros(3), "extra": torch.zeros(1)}
    diff = compare_state_dicts(expected, found)
    assert diff.missing == ("k0", "k7")  # the optional BatchNorm counter is not reported
    assert diff.unexpected == ("extra",)
    assert diff.mismatched == (("k6", (2,), (3,)),)
    text = diff.describe()
    assert "missing keys (2): k0, k7" in text and "unexpected keys (1): extra" in text
    assert "k6 expected [2] found [3]" in text
    many = compare_state_dicts({f"m{i}": torch.zeros(1) for i in range(9)}, {})
    assert many.describe(limit=3).endswith("m0, m1, m2, ... and 6 more")
    assert compare_state_dicts(expected, dict(expected)).ok


def test_strip_prefix_only_when_every_key_has_it() -> None:
    assert strip_prefix({"module.a": 1, "module.b": 2}, "module.") == {"a": 1, "b": 2}
    assert strip_prefix({"module.a": 1, "b": 2}, "module.") == {"module.a": 1, "b": 2}


def test_unwrap_state_dict_refuses_non_mappings(tmp_path: Path) -> None:
    assert unwrap_state_dict({"state_dict": {"a": 1}, "epoch": 3}, path=tmp_path, what="x") == {"a": 1}
    assert unwrap_state_dict({"model": {"a": 1}}, path=tmp_path, what="x") == {"a": 1}
    with pytest.raises(WeightsError, match="found Tensor"):
        unwrap_state_dict(torch.zeros(3), path=tmp_path, what="x")


def test_loaders_registry_covers_every_artifact(tmp_path: Path) -> None:
    assert set(LOADERS) == {
        "inception-fid", "alexnet-lpips-trunk", "lpips-alex-v0.1", "clip-vit-l14", "emo-head-clip",
        "resnet50-imagenet-v1", "resnet50-places365", "emo-resnet50-emoset", "emo-space",
        "attr-coefficients", "attr-vocabulary",
    }
    head = LOADERS["emo-head-clip"](ckpt.write_emotion_head(tmp_path))
    assert isinstance(head, EmotionHead)
    assert LOADERS["emo-space"].__name__ == "load_emo_space"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    for loader in (load_emotion_head, load_inception, load_resnet50_imagenet, load_alexnet):
        with pytest.raises(WeightsError, match="not found") as info:
            loader(missing)
        assert str(missing) in str(info.value)


# ---- inception-fid -------------------------------------------------------------------------------------


def test_inception_torchscript_round_trip(tmp_path: Path) -> None:
    path = ckpt.write_inception_fid(tmp_path, seed=3)
    model = load_inception(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        original = ckpt.FakeInception().eval()
    images = torch.rand(2, 3, 64, 48) * 255
    with torch.no_grad():
        features = model(images, return_features=True)
        assert features.shape == (2, 2048)
        # the same float32 operations on the same batch (TorchScript runs the eager ops): bit for bit on any CPU
        assert torch.equal(features, original(images, return_features=True))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_inception_refuses_non_torchscript(tmp_path: Path) -> None:
    state_dict_file = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state_dict_file)
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        load_inception(state_dict_file)
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        load_inception(_garbage(tmp_path / "garbage.pt"))


# ---- LPIPS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ckpt.write_alexnet_trunk(tmp_path_factory.mktemp("alexnet"), seed=5)


def test_lpips_matches_lpips_built_from_the_same_alexnet(alexnet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trunk_state = ckpt.alexnet_state_dict(seed=5)
    ours = load_lpips_alex(alexnet_file, LPIPS_PACKAGE_ALEX)

    def torchvision_alexnet(**_: object) -> torch.nn.Module:
        model = alexnet(weights=None)
        model.load_state_dict(trunk_state)
        return model

    # lpips builds its trunk by slicing torchvision's alexnet().features; hand it ours.
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", torchvision_alexnet)
    reference = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False,
                            model_path=str(LPIPS_PACKAGE_ALEX))
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.rand((3, 3, 64, 64), generator=generator) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        expected = reference(x, y)
        got = ours(x, y)
    assert torch.equal(got, expected)  # the same float32 modules on the same batch: bit for bit on any CPU
    assert float(expected.abs().min()) > 0  # a non-trivial comparison

    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda **_: alexnet(weights=None))
    other = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False,
                        model_path=str(LPIPS_PACKAGE_ALEX))
    with torch.no_grad():
        assert not torch.allclose(other(x, y), got)  # another trunk gives other distances


def test_lpips_linear_layers_from_the_installed_package() -> None:
    assert sha256_file(LPIPS_PACKAGE_ALEX).startswith("df73285e")  # PROTOCOL.md section 4
    linear = load_lpips_linear(LPIPS_PACKAGE_ALEX)
    raw = torch.load(LPIPS_PACKAGE_ALEX, map_location="cpu", weights_only=True)
    assert list(linear) == [f"lin{i}.model.1.weight" for i in range(5)]
    for key, value in linear.items():
        assert torch.equal(value, raw[key])
    assert [v.shape[1] for v in linear.values()] == [64, 192, 384, 256, 256]


def test_lpips_linear_layout_errors(tmp_path: Path) -> None:
    state = ckpt.lpips_linear_state_dict()
    state["lin2.model.1.weight"] = torch.zeros(1, 256, 1, 1)
    del state["lin4.model.1.weight"]
    state["lins.0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    path = tmp_path / "alex.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_lpips_linear(path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): lin4.model.1.weight" in message
    assert "unexpected keys (1): lins.0.model.1.weight" in message
    assert "lin2.model.1.weight expected [1, 384, 1, 1] found [1, 256, 1, 1]" in message


def test_alexnet_strict_load(tmp_path: Path, alexnet_file: Path) -> None:
    state = ckpt.alexnet_state_dict(seed=5)
    model = load_alexnet(alexnet_file)
    _assert_same_state(model, state)
    features_only = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save(features_only, tmp_path / "features.pth")
    with pytest.raises(WeightsError, match=r"missing keys \(6\): classifier\.1\.weight"):
        load_alexnet(tmp_path / "features.pth")


# ---- CLIP -------------------------------------------------------------------------------------------------------


def test_clip_vision_equals_full_model_image_features(tmp_path: Path) -> None:
    from transformers import CLIPVisionModelWithProjection

    from emogen_bench.models.clip import clip_image_embeddings, load_clip_vision

    snapshot = ckpt.write_clip_snapshot(tmp_path / "clip", seed=1)
    vision = load_clip_vision(snapshot)
    full = ckpt.tiny_clip_model(seed=1)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = full.visual_projection(full.vision_model(pixel_values=pixels).pooler_output)
        got = clip_image_embeddings(vision, pixels)
        via_full = clip_image_embeddings(full, pixels)
    assert isinstance(vision, CLIPVisionModelWithProjection)
    assert got.shape == (2, ckpt.TINY_CLIP["projection_dim"])
    assert torch.equal(got, expected)  # the same float32 operations on the same batch: bit for bit on any CPU
    assert torch.equal(via_full, expected)
    assert not vision.training and not any(p.requires_grad for p in vision.parameters())
    other = ckpt.tiny_clip_model(seed=2)
    with torch.no_grad():
        assert not torch.allclose(clip_image_embeddings(other, pixels), got)


def test_clip_pixel_settings(tmp_path: Path) -> None:
    from emogen_bench.features.clip_pixels import clip_pixels
    from emogen_bench.models.clip import load_clip_pixel_settings

    settings = load_clip_pixel_settings(ckpt.write_clip_snapshot(tmp_path / "clip"))
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert clip_pixels(image, settings).shape == (3, 32, 32)
    with pytest.raises(WeightsError, match="preprocessor_config.json"):
        load_clip_pixel_settings(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "preprocessor_config.json").write_text('{"size": {"height": 2, "width": 2}}')
    with pytest.raises(WeightsError, match="shortest-edge"):
        load_clip_pixel_settings(tmp_path / "bad")


def _rewrite_weights(snapshot: Path, edit) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    weights = snapshot / "model.safetensors"
    state = load_file(weights)
    edit(state)
    save_file(state, weights, metadata={"format": "pt"})


def test_clip_missing_vision_key(tmp_path: Path) -> None:
    from emogen_bench.models.clip import load_clip_vision

    snapshot = ckpt.write_clip_snapshot(tmp_path / "clip")
    _rewrite_weights(snapshot, lambda state: state.pop("vision_model.post_layernorm.weight"))
    with pytest.raises(WeightsError, match=r"missing keys \(1\): vision_model\.post_layernorm\.weight"):
        load_clip_vision(snapshot)


def test_clip_unexpected_vision_key(tmp_path: Path) -> None:
    from emogen_bench.models.clip import load_clip_vision

    snapshot = ckpt.write_clip_snapshot(tmp_path / "clip")
    _rewrite_weights(snapshot, lambda state: state.update({"vision_model.extra.weight": torch.zeros(3)}))
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): vision_model\.extra\.weight"):
        load_clip_vision(snapshot)


def test_clip_wrong_projection_shape(tmp_path: Path) -> None:
    from emogen_bench.models.clip import load_clip_vision

    snapshot = ckpt.write_clip_snapshot(tmp_path / "clip")
    config = json.loads((snapshot / "config.json").read_text())
    config["projection_dim"] = 24
    (snapshot / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError) as info:
        load_clip_vision(snapshot)
    assert str(snapshot) in str(info.value)


def test_clip_incomplete_snapshots(tmp_path: Path) -> None:
    from emogen_bench.models.clip import load_clip_vision

    with pytest.raises(WeightsError, match="snapshot folder not found"):
        load_clip_vision(tmp_path / "absent")
    (tmp_path / "no-config").mkdir()
    with pytest.raises(WeightsError, match="config.json"):
        load_clip_vision(tmp_path / "no-config")
    snapshot = ckpt.write_clip_snapshot(tmp_path / "no-weights")
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="cannot load the CLIP vision weights"):
        load_clip_vision(snapshot)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(WeightsError, match="not a CLIP model"):
        load_clip_vision(tmp_path / "bert")


# ---- CLIP emotion head --------------------------------------------------------------------------------------


def test_emotion_head_round_trip(tmp_path: Path) -> None:
    state = ckpt.emotion_head_state_dict(seed=4)
    head = load_emotion_head(ckpt.write_emotion_head(tmp_path, seed=4))
    _assert_same_state(head, state)
    embeddings = torch.randn(5, 768)
    with torch.no_grad():
        assert torch.allclose(head(embeddings), F.linear(embeddings, state["fc.weight"], state["fc.bias"]))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update({"fc.weight": torch.zeros(8, 512)}), r"fc\.weight expected \[8, 768\] found \[8, 512\]"),
        (lambda s: s.update({"head.weight": torch.zeros(1)}), r"unexpected keys \(1\): head\.weight"),
        (lambda s: s.pop("fc.bias"), r"missing keys \(1\): fc\.bias"),
    ],
)
def test_emotion_head_layout_errors(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    state = ckpt.emotion_head_state_dict()
    edit(state)
    torch.save(state, tmp_path / "head.pth")
    with pytest.raises(WeightsError, match=message):
        load_emotion_head(tmp_path / "head.pth")


def test_emotion_head_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="cannot read"):
        load_emotion_head(_garbage(tmp_path / "head.pth"))
    torch.save(torch.zeros(8, 768), tmp_path / "tensor.pth")
    with pytest.raises(WeightsError, match="found Tensor"):
        load_emotion_head(tmp_path / "tensor.pth")


# ---- ResNet-50: ImageNet V1, Places365 ----------------------------------------------------------------------


def test_resnet50_imagenet_strict(tmp_path: Path) -> None:
    state = ckpt.resnet50_state_dict(seed=6)
    model = load_resnet50_imagenet(ckpt.write_resnet50_imagenet(tmp_path, seed=6))
    _assert_same_state(model, state)
    assert model.fc.out_features == 1000 and not model.training

    places_layout = {k: v for k, v in ckpt.resnet50_state_dict(seed=6, num_classes=365).items()}
    torch.save(places_layout, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match=r"fc\.weight expected \[1000, 2048\] found \[365, 2048\]"):
        load_resnet50_imagenet(tmp_path / "wrong.pth")


def test_resnet50_places365_legacy_checkpoint(tmp_path: Path) -> None:
    path = ckpt.write_resnet50_places365(tmp_path, seed=7)  # legacy serialisation, module. prefix, no counters
    model = load_resnet50_places365(path)
    expected = ckpt.resnet50_state_dict(seed=7, num_classes=365, num_batches_tracked=False)
    _assert_same_state(model, expected)
    reference = resnet50(weights=None, num_classes=365).eval()
    reference.load_state_dict(expected, strict=False)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))  # the same torchvision ResNet-50 on the same batch


def test_resnet50_places365_refusals(tmp_path: Path) -> None:
    import numpy

    torch.save({"state_dict": {}, "best_prec1": numpy.float64(54.7), "arch": "resnet50"}, tmp_path / "numpy.tar")
    with pytest.raises(WeightsError, match=r"weights_only=True.*refuses") as info:
        load_resnet50_places365(tmp_path / "numpy.tar")
    assert "scalar" in str(info.value)  # names the global torch refused
    torch.save(ckpt.emotion_head_state_dict(), tmp_path / "raw.tar")
    with pytest.raises(WeightsError, match="expected the CSAIL Places365 checkpoint"):
        load_resnet50_places365(tmp_path / "raw.tar")


# ---- EmoSet ResNet-50 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emoset_state() -> dict[str, torch.Tensor]:
    return ckpt.emoset_resnet50_state_dict(seed=8)


@pytest.fixture(scope="module")
def emoset_file(tmp_path_factory: pytest.TempPathFactory, emoset_state: dict[str, torch.Tensor]) -> Path:
    return ckpt.write_emoset_resnet50(tmp_path_factory.mktemp("emoset"), state=emoset_state)


def test_emoset_resnet50_matches_an_independent_forward(
    emoset_file: Path, emoset_state: dict[str, torch.Tensor]
) -> None:
    model = load_emoset_resnet50(emoset_file)
    assert isinstance(model, EmoSetResNet50)
    assert model.backbone[0] is model.cnn.conv1 and model.backbone[7] is model.cnn.layer4
    trunk = resnet50(weights=None).eval()
    trunk.load_state_dict({k[len("cnn."):]: v for k, v in emoset_state.items() if k.startswith("cnn.")})
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pooled = torch.flatten(torch.nn.Sequential(*list(trunk.children())[:-1])(images), 1)
        embedding = F.linear(pooled, emoset_state["fc_1.weight"], emoset_state["fc_1.bias"])
        logits = F.linear(torch.relu(embedding), emoset_state["fc_2.2.weight"], emoset_state["fc_2.2.bias"])
        assert model.embed(images).shape == (2, 768)
        # the same float32 operations (nn.Linear is F.linear) on the same batch: bit for bit on any CPU
        assert torch.equal(model.embed(images), embedding)
        assert torch.equal(model(images), logits)
    assert not model.training


@pytest.mark.parametrize(("wrap", "prefix"), [("state_dict", True), ("model", False)])
def test_emoset_resnet50_wrapped_and_prefixed(
    tmp_path: Path, emoset_state: dict[str, torch.Tensor], wrap: str, prefix: bool
) -> None:
    path = ckpt.write_emoset_resnet50(tmp_path, state=emoset_state, wrap=wrap, module_prefix=prefix)
    model = load_emoset_resnet50(path)
    assert torch.equal(model.fc_1.weight, emoset_state["fc_1.weight"])


def test_emoset_resnet50_refuses_differing_twins(tmp_path: Path, emoset_state: dict[str, torch.Tensor]) -> None:
    state = dict(emoset_state)
    state["backbone.4.0.conv1.weight"] = state["cnn.layer1.0.conv1.weight"] + 1.0
    path = ckpt.write_emoset_resnet50(tmp_path, state=state)
    with pytest.raises(WeightsError, match=r"differ in 1 tensors \(first: backbone\.4\.0\.conv1\.weight\)"):
        load_emoset_resnet50(path)


def test_emoset_resnet50_refuses_a_plain_resnet(tmp_path: Path, emoset_state: dict[str, torch.Tensor]) -> None:
    state = {k: v for k, v in emoset_state.items() if not k.startswith("backbone.")}
    path = ckpt.write_emoset_resnet50(tmp_path, state=state)
    with pytest.raises(WeightsError, match=r"missing keys \(\d+\): backbone\.0\.weight"):
        load_emoset_resnet50(path)


# ---- emotion space ------------------------------------------------------------------------------------------


def test_emo_space_round_trip(tmp_path: Path) -> None:
    folder = ckpt.write_emo_space(tmp_path / "emo_space", seed=9)
    space = load_emo_space(folder)
    assert list(space) == list(EMOTION_NAMES)
    for emotion, gaussian in space.items():
        assert torch.equal(gaussian.mean, torch.load(folder / f"{emotion}_mean_v2.pt"))
        assert torch.equal(gaussian.std, torch.load(folder / f"{emotion}_std_v2.pt"))
        assert gaussian.mean.dtype == torch.float32 and gaussian.std.shape == (768,)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("fear_std_v2.pt", None, r"missing \(1 of 16\): fear_std_v2\.pt"),
        ("awe_mean_v2.pt", b"garbage", "cannot read"),
        ("awe_mean_v2.pt", torch.zeros(512), r"shape \(768,\), found torch\.float32 \(512,\)"),
        ("anger_std_v2.pt", torch.zeros(768), "must be > 0"),
        ("sadness_mean_v2.pt", torch.full((768,), float("nan")), "NaN"),
        ("disgust_mean_v2.pt", {"mean": torch.zeros(768)}, "found dict"),
    ],
)
def test_emo_space_bad_files(tmp_path: Path, file: str, content: object, message: str) -> None:
    folder = ckpt.write_emo_space(tmp_path / "emo_space")
    target = folder / file
    if content is None:
        target.unlink()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        torch.save(content, target)
    with pytest.raises(WeightsError, match=message):
        load_emo_space(folder)


# ---- attribute tables ---------------------------------------------------------------------------------------


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_attr_coefficients_round_trip(tmp_path: Path) -> None:
    folder = ckpt.write_attr_coefficients(tmp_path, seed=3)
    tables = load_attr_coefficients(folder)
    assert list(tables) == ["object", "scene"]
    for kind, names, offset in (("object", ckpt.FAKE_OBJECTS, 0), ("scene", ckpt.FAKE_SCENES, 1)):
        expected = ckpt.coefficient_table(names, 3 + offset)
        assert list(tables[kind]) == list(names)
        for name in names:
            assert tables[kind][name].dtype == np.float32
            assert np.array_equal(tables[kind][name], expected[name])
    by_files = load_attr_coefficients({k: folder / f"attr_coefficient_emotion_{k}.pkl" for k in ("object", "scene")})
    assert np.array_equal(by_files["scene"]["cemetery"], tables["scene"]["cemetery"])


def test_attr_coefficients_refuse_code_without_running_it(tmp_path: Path) -> None:
    folder = ckpt.write_attr_coefficients(tmp_path / "tables")
    marker = tmp_path / "pwned"
    with open(folder / "attr_coefficient_emotion_object.pkl", "wb") as handle:
        pickle.dump({"wall_clock": _Evil(marker)}, handle, protocol=4)
    with pytest.raises(WeightsError, match=r"refused global (posix|nt|os)\.system") as info:
        load_attr_coefficients(folder)
    assert "attr_coefficient_emotion_object.pkl" in str(info.value)
    assert not marker.exists()


def test_attr_coefficients_refuse_other_numpy_globals(tmp_path: Path) -> None:
    folder = ckpt.write_attr_coefficients(tmp_path)
    with open(folder / "attr_coefficient_emotion_scene.pkl", "wb") as handle:
        pickle.dump({"cemetery": np.float32(1.0)}, handle, protocol=4)  # a numpy scalar needs multiarray.scalar
    with pytest.raises(WeightsError, match=r"refused global numpy\._?core\.multiarray\.scalar"):
        load_attr_coefficients(folder)


def test_attr_coefficients_hash_checked_before_unpickling(tmp_path: Path) -> None:
    folder = ckpt.write_attr_coefficients(tmp_path / "tables")
    hashes = {p.name: sha256_file(p) for p in folder.iterdir()}
    assert load_attr_coefficients(folder, expected_sha256=hashes)["object"]
    marker = tmp_path / "pwned"
    with open(folder / "attr_coefficient_emotion_object.pkl", "wb") as handle:
        pickle.dump(_Evil(marker), handle, protocol=4)
    with pytest.raises(WeightsError, match="does not match the pinned .* was not opened"):
        load_attr_coefficients(folder, expected_sha256=hashes)
    assert not marker.exists()
    with pytest.raises(ValueError, match="no entry for 'attr_coefficient_emotion_scene.pkl'"):
        load_attr_coefficients(folder, expected_sha256={"attr_coefficient_emotion_object.pkl": "0" * 64})


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (np.full(8, 0.1, dtype=np.float32), "sum to 1"),
        (np.full(8, 0.125, dtype=np.float64), r"float32 array of shape \(8,\), found float64"),
        (np.full(7, 1 / 7, dtype=np.float32), r"found float32 \(7,\)"),
    ],
)
def test_attr_coefficients_invalid_rows(tmp_path: Path, row: np.ndarray, message: str) -> None:
    folder = ckpt.write_attr_coefficients(tmp_path)
    with open(folder / "attr_coefficient_emotion_scene.pkl", "wb") as handle:
        pickle.dump({"cemetery": row}, handle, protocol=4)
    with pytest.raises(WeightsError, match=message):
        load_attr_coefficients(folder)


def test_attr_vocabulary_round_trip_and_refusal(tmp_path: Path) -> None:
    folder = ckpt.write_attr_vocabulary(tmp_path)
    vocabulary = load_attr_vocabulary(folder)
    assert vocabulary.attributes == tuple(dict.fromkeys(ckpt.FAKE_OBJECTS + ckpt.FAKE_SCENES))
    assert list(vocabulary.objects_by_emotion) == list(EMOTION_NAMES)
    assert vocabulary.scenes_by_emotion["awe"] == (ckpt.FAKE_SCENES[1],)
    with open(folder / "all_attribute_object_scene.pkl", "wb") as handle:
        pickle.dump(np.array(["a", "b"]), handle, protocol=4)  # numpy is not allowed in a vocabulary
    with pytest.raises(WeightsError, match="refused global numpy"):
        load_attr_vocabulary(folder)
    with open(folder / "all_attribute_object_scene.pkl", "wb") as handle:
        pickle.dump(["a", "a"], handle, protocol=4)
    with pytest.raises(WeightsError, match="repeats names"):
        load_attr_vocabulary(folder)


def test_attr_tables_json_round_trip_is_exact(tmp_path: Path) -> None:
    coefficients = load_attr_coefficients(ckpt.write_attr_coefficients(tmp_path / "pkl", seed=11))
    vocabulary = load_attr_vocabulary(ckpt.write_attr_vocabulary(tmp_path / "pkl"))
    tables = AttrTables(coefficients, vocabulary, {"attr_coefficient_emotion_object.pkl": "ab" * 32})
    out = export_attr_tables_json(tables, tmp_path / "attr_tables.json")
    loaded = load_attr_tables_json(out)
    for kind in ("object", "scene"):
        assert list(loaded.coefficients[kind]) == list(coefficients[kind])
        for name, row in coefficients[kind].items():
            assert loaded.coefficients[kind][name].dtype == np.float32
            assert loaded.coefficients[kind][name].tobytes() == row.tobytes()
    assert loaded.vocabulary == vocabulary
    assert loaded.sources == tables.sources
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attr_tables.json", "pkl"]  # no temporary left


def test_attr_tables_json_never_overwrites_silently(tmp_path: Path) -> None:
    coefficients = load_attr_coefficients(ckpt.write_attr_coefficients(tmp_path / "pkl"))
    out = tmp_path / "attr_tables.json"
    out.write_text("keep me")
    with pytest.raises(UsageError, match="already exists"):
        export_attr_tables_json(AttrTables(coefficients), out)
    assert out.read_text() == "keep me"
    export_attr_tables_json(AttrTables(coefficients), out, overwrite=True)
    assert load_attr_tables_json(out).vocabulary is None


def test_attr_tables_json_validation(tmp_path: Path) -> None:
    coefficients = load_attr_coefficients(ckpt.write_attr_coefficients(tmp_path / "pkl"))
    out = export_attr_tables_json(AttrTables(coefficients), tmp_path / "t.json")
    document = json.loads(out.read_text())
    document["coefficients"]["scene"]["cemetery"] = [0.5] * 8
    out.write_text(json.dumps(document))
    with pytest.raises(WeightsError, match="'cemetery': not a softmax"):
        load_attr_tables_json(out)
    document["format_version"] = 99
    out.write_text(json.dumps(document))
    with pytest.raises(WeightsError, match="format version 99"):
        load_attr_tables_json(out)
    out.write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_attr_tables_json(out)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_checkpoint_that_would_run_code_is_named_as_such_not_as_damaged(tmp_path: Path, legacy: bool) -> None:
    from emogen_bench.models._state_dict import load_torch_file

    marker = tmp_path / "pwned"
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": _Evil(marker)}, path, _use_new_zipfile_serialization=not legacy)
    refusal = r"(?i)objects beyond tensors and plain values \(.*unsupported global.*system"
    with pytest.raises(WeightsError, match=refusal) as info:
        load_torch_file(path, what="ResNet-50")
    assert "truncated" not in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
