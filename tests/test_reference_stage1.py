"""Stage 1 of the reference EmoGen: the emotion encoder (tiny trunk on a synthetic EmoSet; real layout for loading)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from emogen_bench.data import load_index, prepare_emoset
from emogen_bench.demo import write_synthetic_emoset
from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.weights import open_store
from reference.data import EmoSetImages, encoder_transform, split_rows
from reference.encoder import (
    EmotionClassifier,
    Stage1Config,
    TinyTrunk,
    build_classifier,
    load_encoder,
    load_official_encoder,
    make_optimizer,
    stage1_step,
    train_stage1,
)

TINY = Stage1Config(
    trunk="tiny", epochs=2, batch_size=8, resize=40, crop=32, device="cpu", num_workers=0, eval_batch_size=16,
    show_progress=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic EmoSet (3 train, 1 val, 2 test images per emotion) and its prepared index."""
    base = tmp_path_factory.mktemp("stage1")
    write_synthetic_emoset(base / "emoset")
    prepare_emoset(base / "emoset", base / "index", show_progress=False)
    return base / "index", base / "emoset"


def test_a_few_steps_on_a_fixed_batch_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = EmotionClassifier(TinyTrunk())
    images, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 8
    optimizer = make_optimizer(model, replace(TINY, optimizer="adamw"))

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.cross_entropy(model(images), labels))

    before = eval_loss()
    model.train()
    losses = [stage1_step(model, optimizer, images, labels)[0] for _ in range(60)]
    assert eval_loss() < 0.7 * before
    assert sum(losses[-10:]) < sum(losses[:10])


def test_encode_is_the_fc1_output_before_the_relu() -> None:
    torch.manual_seed(1)
    model = EmotionClassifier(TinyTrunk()).eval()
    captured = {}
    model.fc_1.register_forward_hook(lambda module, args, output: captured.setdefault("fc_1", output))
    images = torch.randn(4, 3, 32, 32)
    logits = model(images)
    features = model.encode(images)
    assert features.shape == (4, 768)
    assert torch.equal(features, captured["fc_1"])
    assert (features < 0).any()  # before the ReLU
    direct = F.linear(model.trunk(images), model.fc_1.weight, model.fc_1.bias)
    # the same float32 operations on the same batch: bit for bit on any CPU
    assert torch.equal(features, direct)
    assert torch.equal(logits, model.fc_2(torch.relu(direct)))


def test_custom_trunk_needs_its_feature_size() -> None:
    with pytest.raises(UsageError, match="feature_dim"):
        EmotionClassifier(nn.Flatten())
    assert EmotionClassifier(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), feature_dim=3).fc_1.in_features == 3


def _accuracy_in_eval_batches(model: nn.Module, rows, emoset_root: Path, config: Stage1Config) -> float:
    """Independent accuracy: each image opened and put through the eval transform here, then argmax.

    The images go through the model in the split's order in batches of ``config.eval_batch_size``, as the run
    evaluates them: the same float32 model on the same batches gives the run's logits bit for bit on any CPU, so
    the argmax cannot differ by another CPU's rounding (one image at a time could flip a near tie).
    """
    transform = encoder_transform(False, resize=config.resize, crop=config.crop)
    from PIL import Image

    images = []
    for row in rows:
        with Image.open(emoset_root / row.path) as image:
            images.append(transform(image.convert("RGB")))
    targets = torch.tensor([row.emotion_id for row in rows])
    with torch.no_grad():
        batches = torch.stack(images).split(config.eval_batch_size)
        predicted = torch.cat([model(batch).argmax(dim=1) for batch in batches])
    return float((predicted == targets).double().mean())


def test_training_reports_val_accuracy_per_epoch_and_test_accuracy(emoset: tuple[Path, Path], tmp_path: Path) -> None:
    index, root = emoset
    result = train_stage1(TINY, index, root, tmp_path / "run")
    assert [entry["epoch"] for entry in result.history] == [1, 2]
    val_accuracies = [entry["val_accuracy"] for entry in result.history]
    assert all(0.0 <= value <= 1.0 for value in val_accuracies)
    assert result.best_epoch == 1 + val_accuracies.index(max(val_accuracies))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["val_accuracy"] for entry in log] == val_accuracies
    best = load_encoder(result.best_checkpoint)
    test_rows = split_rows(load_index(index), "test")
    assert result.test_accuracy == pytest.approx(_accuracy_in_eval_batches(best, test_rows, root, TINY), abs=1e-12)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["test_accuracy"] == result.test_accuracy and saved["config"]["lr"] == 1e-3
    val_rows = split_rows(load_index(index), "val")
    assert result.best_val_accuracy == pytest.approx(_accuracy_in_eval_batches(best, val_rows, root, TINY), abs=1e-12)


def test_resume_from_the_last_epoch_continues_bitwise(emoset: tuple[Path, Path], tmp_path: Path) -> None:
    index, root = emoset
    straight = train_stage1(TINY, index, root, tmp_path / "straight")
    train_stage1(replace(TINY, epochs=1), index, root, tmp_path / "resumed")
    resumed = train_stage1(TINY, index, root, tmp_path / "resumed", resume=True)
    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(
        torch.equal(x, y) for x, y in zip(a["optimizer"]["state"][0].values(), b["optimizer"]["state"][0].values())
    )
    strip = [{k: v for k, v in entry.items() if k != "seconds"} for entry in straight.history]
    assert strip == [{k: v for k, v in entry.items() if k != "seconds"} for entry in resumed.history]
    assert resumed.test_accuracy == straight.test_accuracy


def test_a_run_is_never_overwritten_and_resumes_only_with_its_settings(
    emoset: tuple[Path, Path], tmp_path: Path
) -> None:
    index, root = emoset
    config = replace(TINY, epochs=1)
    train_stage1(config, index, root, tmp_path / "run")
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(UsageError, match="already holds a stage-1 run"):
        train_stage1(config, index, root, tmp_path / "run")
    with pytest.raises(UsageError, match="lr: 0.001 -> 0.01"):
        train_stage1(replace(config, lr=1e-2), index, root, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_the_released_checkpoint_layout_loads_through_the_registry(tmp_path: Path, bench_home: Path) -> None:
    import checkpoints

    from emogen_bench.models.emoset_resnet import load_emoset_resnet50

    path = checkpoints.write_emoset_resnet50(tmp_path / "emoset", seed=3, fc_scale=0.005)
    override = tmp_path / "override.toml"
    override.write_text(f'[artifacts.emo-resnet50-emoset]\npath = "{path.as_posix()}"\n')
    encoder = load_official_encoder(open_store(override, offline=True))
    captured = {}
    encoder.fc_1.register_forward_hook(lambda module, args, output: captured.setdefault("fc_1", output))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = encoder(images)
        features = encoder.encode(images)
        released = load_emoset_resnet50(path)
        expected_features = released.embed(images)
        expected_logits = released(images)
    assert torch.equal(features, captured["fc_1"])
    # the same torchvision ResNet-50 operations on the same batch of 2: bit for bit on any CPU
    assert torch.equal(features, expected_features)
    assert torch.equal(logits, expected_logits)
    state = torch.load(path, weights_only=True)
    assert torch.equal(encoder.fc_2.weight, state["fc_2.2.weight"])
    assert torch.equal(encoder.trunk.layer4[2].conv3.weight, state["cnn.layer4.2.conv3.weight"])
    assert not any(p.requires_grad for p in encoder.parameters())


def test_imagenet_init_comes_from_the_registry(tmp_path: Path, bench_home: Path) -> None:
    import checkpoints

    config = Stage1Config(device="cpu")
    with pytest.raises(WeightsError, match="--no-pretrained"):
        build_classifier(config, open_store(offline=True))
    path = checkpoints.write_resnet50_imagenet(tmp_path / "imagenet", seed=5)
    override = tmp_path / "override.toml"
    override.write_text(f'[artifacts.resnet50-imagenet-v1]\npath = "{path.as_posix()}"\n')
    model = build_classifier(config, open_store(override, offline=True))
    state = torch.load(path, weights_only=True)
    assert torch.equal(model.trunk.conv1.weight, state["conv1.weight"])
    assert isinstance(model.trunk.fc, nn.Identity)
    assert all(p.requires_grad for p in model.parameters())


def test_a_missing_image_names_the_file(emoset: tuple[Path, Path], tmp_path: Path) -> None:
    from emogen_bench.errors import DataError

    index, root = emoset
    rows = load_index(index)[:1]
    dataset = EmoSetImages(rows, tmp_path)
    with pytest.raises(DataError, match=rows[0].path.split("/")[-1]):
        dataset[0]
