"""Inception extractor: clean-fid's resize and clean-fid's own feature route, on a TorchScript in the NVlabs layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import checkpoints as ckpt
import numpy as np
import pytest
import torch
from cleanfid.fid import get_files_features
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import build_resizer
from PIL import Image
from tolerances import network_bound
from torch import nn

from emogen_bench.errors import WeightsError
from emogen_bench.features.inception import InceptionExtractor
from emogen_bench.models.inception import load_inception

SHAPES = [(299, 299), (256, 384), (512, 512), (700, 300)]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ckpt.write_inception_fid(tmp_path_factory.mktemp("inception"), seed=3)


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]


def test_preprocess_is_clean_fids_resizer_output() -> None:
    extractor = InceptionExtractor(ckpt.FakeInception().eval(), {"inception-fid": "sha256:x"})
    clean = build_resizer("clean")  # clean-fid's own "clean" mode
    for image in _images():
        expected = torch.from_numpy(clean(image).transpose(2, 0, 1).copy())
        got = extractor.preprocess(image)
        assert got.dtype == torch.float32 and got.shape == (3, 299, 299)
        assert torch.equal(got, expected)
    # the resize is done in float, not re-quantised: some values are not integers
    assert not torch.equal(got, got.round())


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:FutureWarning")  # clean-fid's own loader
def test_features_equal_clean_fids_own_pipeline(tmp_path: Path, inception_file: Path) -> None:
    files = []
    for i, image in enumerate(_images(1)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    reference_model = InceptionV3W(str(inception_file.parent), download=False, resize_inside=False)
    expected = get_files_features(
        [str(f) for f in files], model=reference_model, num_workers=0, batch_size=3,
        device=torch.device("cpu"), mode="clean", verbose=False,
    )  # fmt: skip
    extractor = InceptionExtractor(load_inception(inception_file), {"inception-fid": "sha256:x"})
    decoded = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    got = extractor(torch.stack([extractor.preprocess(image) for image in decoded]))["pool"]
    assert extractor.info.outputs == {"pool": (2048,)} and got.shape == (len(files), 2048)
    stand_in = ckpt.FakeInception()
    stand_in.load_state_dict(load_inception(inception_file).state_dict())
    layers = stand_in.layers
    inputs = (torch.stack([extractor.preprocess(image) for image in decoded]) - 128) / 128  # [-1, 1], both routes
    scale, unit = network_bound([layers.conv, layers.pool, nn.ReLU(), layers.expand], inputs)
    # the same float32 layers on the same inputs, batched differently: each within gamma_K |W||x| of exact
    np.testing.assert_array_less(np.abs(got - expected), np.broadcast_to(2 * unit * scale, got.shape))


def test_features_do_not_depend_on_batch_composition(inception_file: Path) -> None:
    extractor = InceptionExtractor(load_inception(inception_file), {"inception-fid": "sha256:x"})
    batch = torch.stack([extractor.preprocess(image) for image in _images(2)])
    together = extractor(batch)["pool"]
    for i in range(batch.shape[0]):
        alone = extractor(batch[i : i + 1])["pool"]
        assert np.array_equal(alone[0], together[i])
    reordered = extractor(batch.flip(0))["pool"]
    assert np.array_equal(reordered[::-1], together)


def test_info_records_artifact_and_preprocessing(inception_file: Path) -> None:
    extractor = InceptionExtractor(load_inception(inception_file), {"inception-fid": "sha256:abc"})
    info = extractor.info
    assert info.name == "inception" and info.cacheable and not info.smoke
    assert dict(info.artifacts) == {"inception-fid": "sha256:abc"}
    assert "299" in info.preprocess_version
    other = InceptionExtractor(load_inception(inception_file), {"inception-fid": "sha256:abd"})
    assert other.info.cache_key != info.cache_key


def test_preprocessor_is_picklable_without_the_model(inception_file: Path) -> None:
    extractor = InceptionExtractor(load_inception(inception_file), {"inception-fid": "sha256:x"})
    image = _images(3)[1]
    copy = pickle.loads(pickle.dumps(extractor.preprocessor))
    assert torch.equal(copy(image), extractor.preprocess(image))


def test_a_model_without_the_nvlabs_interface_is_refused() -> None:
    with pytest.raises(WeightsError, match="inception-fid"):
        InceptionExtractor(torch.nn.Linear(3, 3), {"inception-fid": "sha256:x"})
