"""Peer cross-checks: the metric maths against other people's code on the same inputs (issue 10, item 4).

Peers, pinned in ``pyproject.toml``'s ``peers`` extra (part of ``dev``): clean-fid 0.1.35, torchmetrics 1.9.0
with torch-fidelity 0.4.0 (torchmetrics' own Inception wrapper needs it), lpips 0.1.4.  Each check gives the
project and the peer the same inputs and compares the numbers against a bound on float32/float64 rounding that
is computed from those inputs (helpers ``frechet_bound``, ``feature_perturbation_bound``, ``kid_bound``,
``network_bound`` in ``tolerances.py``; each assertion has its one-line derivation beside it), never against one
machine's output.

1. FID and KID maths on float64 features, no network, with n > d and with n < d (generated side singular, as a
   per-emotion FID of 1,000 images at d = 2048 is): the eicg-v3 distance (symmetric eigenvalues; its covariance,
   Gram and jackknife-pooled routes) and the paper-code ``torchmetrics_frechet`` against clean-fid's
   ``fid_from_feats`` (scipy ``sqrtm``), torchmetrics' ``FrechetInceptionDistance`` fed the features through an
   identity feature module (its raw float64 sums) and torchmetrics' ``_compute_fid`` on the same statistics.
   KID (``kid`` and ``mmd2_unbiased``) against clean-fid's ``kernel_distance`` and torchmetrics'
   ``KernelInceptionDistance`` on whole sets (subset size = n on both sides: every subset is a permutation, so no
   subset randomness differs).
2. eicg-v3 FID end to end (the issue's "eicg-v1" is the protocol since renamed eicg-v2, now eicg-v3): clean-fid's
   ``compute_fid`` in mode "clean" on two folders of PNGs (its file listing, PIL decoding, clean resize in its
   data loader, float32 features, ``np.mean``/``np.cov``, ``sqrtm``) against ``InceptionExtractor`` on the
   project's decoding plus ``metrics.fid`` (per-emotion Gram route and jackknife-pooled route).  The resized
   images must be bitwise equal, the features equal to float32 rounding, the FID equal to the bound that rounding
   implies.
3. emogen-paper-code FID against torchmetrics' real ``FrechetInceptionDistance(feature=64, normalize=True)`` fed
   what the released code feeds it (JPEG -> PIL -> ``Resize((299, 299))`` -> ``ToTensor``), per emotion and
   pooled, against ``PaperCodeInceptionExtractor`` + ``paper_code_fid``.  torchmetrics 1.9 skips its
   ``(x * 255).byte()`` step for a custom ``feature=`` module (checked here), so a custom module would have to
   redo the very step under test; instead torchmetrics' own ``NoTrainInceptionV3`` (its forward: uint8 check,
   float cast, antialiased resize to 299, ``(x - 128) / 128``) is kept and only its InceptionV3 trunk is
   replaced by the stand-in network the project's extractor wraps, the same module object on both sides.
4. Exact LPIPS diversity (``lpips_diversity`` over ``LpipsExtractor`` features, jackknife replicates included)
   against ``lpips.LPIPS(net="alex", pretrained=True)`` (the wheel's v0.1 linear layers) run on every pair of a
   small set, the AlexNet trunk seeded-random in torchvision's layout (``checkpoints.alexnet_state_dict``).

The Inception stand-in (checks 2 and 3) is ``checkpoints.FakeInception``'s NVlabs TorchScript interface around
the tiny extractor's layer types (stride-8 conv, ReLU, average pool, conv), widened to 96 hidden channels pooled
to a 4 x 4 grid and read by a 4 x 4 conv: with ``FakeInception``'s 8 or ``TinyInception``'s 16 hidden channels
pooled to 1 x 1, the 64-d features have a covariance of rank 8 or 16 or a condition number of about 1e6-1e7,
where no useful rounding bound holds (Jordan blocks in ``S1 S2``; Bauer-Fike grows with the condition number).
LPIPS runs at 256 x 256 (the maths is size-independent; 512 costs 4x the time).

Partial versions elsewhere, not repeated here: ``test_metrics_fid.py`` (clean-fid's ``frechet_distance`` at full
rank, d = 24), ``test_metrics_kid.py`` (clean-fid's ``kernel_distance`` on whole sets, d = 8),
``test_features_inception.py`` (clean-fid's ``get_files_features`` at 2048-d, features only),
``test_evaluate.py`` (end-to-end FID against clean-fid's ``frechet_distance`` on directly computed features,
LPIPS against the package on 3 images per emotion), ``test_paper_code_metrics.py`` and
``test_paper_code_evaluate.py`` (torchmetrics' formulation re-implemented with scipy ``sqrtm``, not torchmetrics
itself), ``test_features_lpips.py`` (phi distances against the forward of the project-built LPIPS model).

Observed: the largest |difference| of each check, its tolerance (the tightest over the check's rows), the largest
difference / tolerance and the compared values; written once by a small script from the output of
``.venv/bin/python tests/test_peer_crosschecks.py``, which prints every comparison (x86-64, 2 cores):

<!-- observed -->
    check                                              max |diff|  tolerance max ratio       value
    1. FID, 4 routes x 3 peers, n > d (300/200, d=48)     8.5e-14    9.1e-07     9e-08        99.9
    1. FID, 4 routes x 3 peers, n < d (300/30, d=48)      6.3e-07    5.0e-03     1e-04         115
    1. KID, 2 routes x 2 peers, n > d (120, d=16)         1.8e-15    2.8e-10     6e-06        8.76
    1. KID, 2 routes x 2 peers, n < d (40, d=48)          0.0e+00    4.3e-11     0e+00        9.06
    2. eicg-v3 features / (|W||x|), 120 images            0.0e+00    2.2e-04     0e+00           -
    2. eicg-v3 FID vs compute_fid, 2 routes (80/40)       5.9e-09    5.3e-05     1e-04       0.145
    3. paper-code features / (|W||x|), 192 images         0.0e+00    2.2e-04     0e+00           -
    3. paper-code FID, 2 emotions + pooled + mean         6.6e-09    1.8e-05     9e-05  0.084-0.16
    4. LPIPS means, 2 emotions + overall (5, 4 img)       1.9e-09    3.7e-05     5e-05 0.071-0.076
    4. LPIPS jackknife replicates, relative               6.2e-08    5.2e-04     1e-04           -

(numpy 2.4.6, scipy 1.17.1, torch 2.14.1 on CPU.)
<!-- /observed -->
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import checkpoints as ckpt
import lpips
import numpy as np
import pytest
import torch
from cleanfid.fid import compute_fid, fid_from_feats, kernel_distance
from cleanfid.inception_torchscript import InceptionV3W
from PIL import Image
from tolerances import EPS64, U32, feature_perturbation_bound, frechet_bound, gamma, kid_bound, network_bound
from torch import nn
from torchvision import transforms
from torchvision.models import alexnet

from emogen_bench.features.inception import InceptionExtractor
from emogen_bench.features.lpips import LpipsExtractor
from emogen_bench.features.paper_code import PaperCodeInceptionExtractor
from emogen_bench.metrics.fid import GaussianStats, StatsAccumulator, fid, frechet_distance
from emogen_bench.metrics.intervals import group_ids
from emogen_bench.metrics.kid import kid, mmd2_unbiased
from emogen_bench.metrics.lpips import lpips_diversity
from emogen_bench.metrics.pairwise import PairwiseAccumulator
from emogen_bench.metrics.paper_code import SumsAccumulator, paper_code_fid, sums_stats, torchmetrics_frechet
from emogen_bench.models.inception import load_inception
from emogen_bench.models.lpips_alex import build_lpips_alex, load_lpips_linear
from emogen_bench.pipeline import decode_image
from emogen_bench.task import METRICS

torchmetrics_fid = pytest.importorskip("torchmetrics.image.fid", reason="peer checks need emogen-bench[peers]")
torchmetrics_kid = pytest.importorskip("torchmetrics.image.kid", reason="peer checks need emogen-bench[peers]")
fidelity_base = pytest.importorskip("torch_fidelity.feature_extractor_base", reason="needs emogen-bench[peers]")

STAND_IN_HIDDEN, STAND_IN_GRID, STAND_IN_DIM = 96, 4, 64
INCEPTION_ARTIFACTS = {"inception-fid": "sha256:stand-in"}
LPIPS_ARTIFACTS = {"alexnet-lpips-trunk": "sha256:t", "lpips-alex-v0.1": "sha256:l"}
PACKAGE_LINEAR = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
LPIPS_SIZE = 256
CPU = torch.device("cpu")

pytestmark = [
    pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning"),  # clean-fid's sqrtm
    pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning"),  # sqrtm when n < d
    pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:FutureWarning"),  # clean-fid loads TorchScript
]


@pytest.fixture(autouse=True)
def _private_torch_rng() -> Iterator[None]:
    """Model constructors and torchmetrics' dummy inputs draw from torch's global RNG: keep other tests' draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@dataclass(frozen=True)
class Observation:
    """One comparison: the largest |difference| seen, the rounding bound it must stay within, the value's size."""

    name: str
    diff: float
    tol: float
    value: float

    def check(self) -> None:
        assert np.isfinite(self.diff) and self.diff <= self.tol, (
            f"{self.name}: |difference| {self.diff:.3e} > {self.tol:.3e}"
        )
        assert self.value > 0  # the compared quantity is not trivially zero


# --- inputs ----------------------------------------------------------------------------------------------------


def random_features(seed: int, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    """Correlated Gaussian features whose covariance has a condition number of about 40."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(d) + 0.5 * rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d) + offset


def random_images(seed: int, count: int) -> list[np.ndarray]:
    """Blocky random images (3-8 x 3-8 random colours, blocks of 2-6 px, every 7th of 50 px so above 299), noisy."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        rows, cols = (int(v) for v in rng.integers(3, 9, 2))
        block = int(rng.integers(2, 7)) if i % 7 else 50
        grid = rng.integers(0, 256, (rows, cols, 3)).astype(np.float64)
        image = np.kron(grid, np.ones((block, block, 1))) + rng.normal(0.0, 8.0, (rows * block, cols * block, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def write_images(folder: Path, images: Sequence[np.ndarray], suffix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i:03d}.{suffix}")
        Image.fromarray(image).save(paths[-1], **({"quality": 95} if suffix == "jpg" else {}))
    return paths


def stand_in(seed: int) -> ckpt.FakeInception:
    """``checkpoints.FakeInception``'s NVlabs interface around the tiny extractor's layer types, widened."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ckpt.FakeInception(STAND_IN_DIM)
        model.layers = nn.Sequential(
            nn.Conv2d(3, STAND_IN_HIDDEN, kernel_size=8, stride=8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(STAND_IN_GRID),
            nn.Conv2d(STAND_IN_HIDDEN, STAND_IN_DIM, kernel_size=STAND_IN_GRID),
        )
    return model.eval().requires_grad_(False)


class AnyWidthInceptionV3W(InceptionV3W):
    """clean-fid's ``InceptionV3W`` (its TorchScript loading, its mode-"clean" call ``layers((x - 128) / 128)``)
    with the hard-coded ``view((bs, 2048))`` lifted to fit the 64-d stand-in; records each batch it is given."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 299 and x.shape[3] == 299
        features = self.layers.forward((x - 128) / 128).view((x.shape[0], -1))
        self.seen.append((x.detach().clone(), features.detach().clone()))
        return features


class TinyTrunkInceptionV3(torchmetrics_fid.NoTrainInceptionV3):
    """torchmetrics' ``NoTrainInceptionV3`` with its forward untouched and the stand-in as its trunk.

    Its ``_torch_fidelity_forward`` runs ``Conv2d_1a_3x3 .. MaxPool_1`` and, for feature "64", averages to 1 x 1:
    the stand-in's ``layers`` go first, the rest are identities.  torch-fidelity's weight download is skipped by
    calling only ``FeatureExtractorBase.__init__`` (which still validates the feature name).
    """

    def __init__(self, trunk: nn.Module, features_list: list[str], antialias: bool) -> None:
        fidelity_base.FeatureExtractorBase.__init__(self, "inception-v3-compat", features_list)
        self.use_antialias = antialias
        self.Conv2d_1a_3x3 = trunk
        self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.MaxPool_1 = nn.Identity(), nn.Identity(), nn.Identity()
        self.eval()


def package_lpips(trunk_state: dict[str, torch.Tensor]) -> lpips.LPIPS:
    """The lpips package's own AlexNet LPIPS v0.1 (its wheel's linear layers); trunk copied in by torchvision index."""
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=``; nothing is downloaded
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    for part in (network.net.slice1, network.net.slice2, network.net.slice3, network.net.slice4, network.net.slice5):
        for name, layer in part.named_children():
            layer.load_state_dict({k: trunk_state[f"features.{name}.{k}"] for k in layer.state_dict()})
    return network.eval()


# --- 1. FID and KID maths --------------------------------------------------------------------------------------


def fid_maths_observations(n_ref: int, n_gen: int, d: int) -> list[Observation]:
    ref, gen = random_features(0, n_ref, d, offset=0.5), random_features(1, n_gen, d, offset=0.8)
    ref_stats, gen_stats = GaussianStats.from_features(ref), GaussianStats.from_features(gen)
    ours = {
        "eicg frechet_distance": frechet_distance(ref_stats, gen_stats),
        "eicg fid(groups=None)": fid(gen, ref_stats, groups=None).value,  # the Gram route when n <= d
        "eicg fid(groups=10)": fid(gen, ref_stats, groups=10).value,
        "paper-code torchmetrics_frechet": torchmetrics_frechet(sums_stats(ref), sums_stats(gen)),
    }
    metric = torchmetrics_fid.FrechetInceptionDistance(feature=nn.Identity(), input_img_size=(d,))
    metric.update(torch.from_numpy(ref), real=True)  # float64 "images" through an identity feature module
    metric.update(torch.from_numpy(gen), real=False)
    tensors = [torch.from_numpy(a) for a in (ref_stats.mu, ref_stats.sigma, gen_stats.mu, gen_stats.sigma)]
    peers = {
        "clean-fid fid_from_feats": float(fid_from_feats(gen, ref)),
        "torchmetrics FrechetInceptionDistance": float(metric.compute()),
        "torchmetrics _compute_fid": float(torchmetrics_fid._compute_fid(*tensors)),
    }
    tol = 2 * frechet_bound(ref, gen)  # two float64 routes, each within frechet_bound of the exact FID
    label = f"FID maths n_ref={n_ref} n_gen={n_gen} d={d}"
    return [
        Observation(f"{label}: {name} vs {len(peers)} peers", max(abs(v - p) for p in peers.values()), tol, v)
        for name, v in ours.items()
    ]


@pytest.mark.parametrize(("n_ref", "n_gen", "d"), [(300, 200, 48), (300, 30, 48)], ids=["n>d", "n<d"])
def test_fid_maths_matches_clean_fid_and_torchmetrics(n_ref: int, n_gen: int, d: int) -> None:
    for observation in fid_maths_observations(n_ref, n_gen, d):
        observation.check()


def kid_observations(n: int, d: int) -> list[Observation]:
    ref, gen = random_features(2, n, d), random_features(3, n, d, offset=0.3)
    state = np.random.get_state()
    try:
        np.random.seed(0)
        clean = kernel_distance(gen, ref, num_subsets=2, max_subset_size=n)
    finally:
        np.random.set_state(state)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
        torch.manual_seed(0)
        metric = torchmetrics_kid.KernelInceptionDistance(feature=nn.Identity(), subsets=2, subset_size=n)
        metric.update(torch.from_numpy(ref), real=True)
        metric.update(torch.from_numpy(gen), real=False)
        tm_mean = float(metric.compute()[0])
    ours = {"kid": kid(gen, ref, subsets=2, subset_size=n, seed=0).value, "mmd2_unbiased": mmd2_unbiased(ref, gen)}
    tol = 2 * kid_bound(ref, gen)  # two float64 routes, each within kid_bound of the exact MMD^2
    return [
        Observation(f"KID n={n} d={d}: {name} vs 2 peers", max(abs(v - clean), abs(v - tm_mean)), tol, v)
        for name, v in ours.items()
    ]


@pytest.mark.parametrize(("n", "d"), [(120, 16), (40, 48)], ids=["n>d", "n<d"])
def test_kid_on_whole_sets_matches_clean_fid_and_torchmetrics(n: int, d: int) -> None:
    for observation in kid_observations(n, d):
        observation.check()


# --- 2. eicg-v3 FID end to end against clean-fid's folder pipeline ------------------------------------------------


def eicg_end_to_end_observations(folder: Path) -> list[Observation]:
    model = stand_in(seed=5)
    weights = folder / "inception" / ckpt.FILE_NAMES["inception-fid"]
    weights.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; the real file is TorchScript
        torch.jit.save(torch.jit.script(model), str(weights))
    ref_files = write_images(folder / "reference", random_images(10, 80), "png")  # n > d = 64
    gen_files = write_images(folder / "generated", random_images(11, 40), "png")  # n < d, as per emotion

    clean = AnyWidthInceptionV3W(str(weights.parent), download=False, resize_inside=False)
    clean_fid = float(compute_fid(
        str(folder / "reference"), str(folder / "generated"), mode="clean", custom_feat_extractor=clean,
        num_workers=0, batch_size=16, device=CPU, verbose=False,
    ))  # fmt: skip
    clean_inputs = torch.cat([x for x, _ in clean.seen])  # reference folder first, then generated
    clean_features = torch.cat([f for _, f in clean.seen]).double().numpy()

    extractor = InceptionExtractor(load_inception(weights), INCEPTION_ARTIFACTS)
    inputs = torch.stack([extractor.preprocess(decode_image(p.read_bytes())) for p in ref_files + gen_files])
    features = extractor(inputs)["pool"].astype(np.float64)
    accumulator = StatsAccumulator(STAND_IN_DIM)  # as build_reference_stats accumulates the reference
    for start in range(0, len(ref_files), 16):
        accumulator.add(features[start : min(start + 16, len(ref_files))])
    reference = accumulator.stats()

    # Premise: both fed the network bitwise-equal resized images (then the same elementwise (x - 128) / 128).
    assert torch.equal(clean_inputs, inputs)
    scale, unit = network_bound(list(model.layers), (inputs - 128) / 128)
    # features: each side within gamma_K |W||x| of the exact value, so |difference| <= 2 gamma_K |W||x|
    difference = np.abs(clean_features - features)
    observations = [Observation("eicg end to end: features, |difference| / (|W||x|)", float(np.max(difference / scale)),
                                2 * unit, float(np.max(np.abs(features) / scale)))]  # fmt: skip
    split = len(ref_files)
    ref, gen, clean_ref, clean_gen = features[:split], features[split:], clean_features[:split], clean_features[split:]
    # FID: clean-fid's route (float32 means) on its features + ours (float64) on ours + the features' difference
    tol = (
        frechet_bound(clean_ref, clean_gen, mean_unit=U32)
        + frechet_bound(ref, gen)
        + feature_perturbation_bound((ref, gen), (difference[:split], difference[split:]))
    )
    for name, value in (
        ("per-emotion fid(groups=None)", fid(gen, reference, groups=None).value),  # the Gram route (n <= d)
        ("pooled fid(groups=20)", fid(gen, reference, groups=20).value),  # the covariance route
    ):
        observations.append(Observation(f"eicg end to end: {name} vs clean-fid compute_fid", abs(value - clean_fid),
                                        tol, value))  # fmt: skip
    return observations


def test_eicg_fid_end_to_end_matches_clean_fids_own_pipeline(tmp_path: Path) -> None:
    for observation in eicg_end_to_end_observations(tmp_path):
        observation.check()


# --- 3. paper-code FID against torchmetrics' FrechetInceptionDistance ---------------------------------------------


def torchmetrics_custom_module_input_dtype() -> torch.dtype:
    """What torchmetrics 1.9 hands a custom ``feature=`` module under ``normalize=True``."""
    probe: list[torch.dtype] = []
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 299 * 299, 4))
    module.register_forward_pre_hook(lambda _module, args: probe.append(args[0].dtype))
    metric = torchmetrics_fid.FrechetInceptionDistance(feature=module, normalize=True)
    probe.clear()  # drop the constructor's dummy call
    metric.update(torch.rand(2, 3, 299, 299), real=True)
    return probe[0]


def paper_code_observations(folder: Path) -> list[Observation]:
    model = stand_in(seed=7)
    emotions = ("amusement", "sadness")
    counts = {"reference": 72, "generated": 24}  # reference n > d = 64; generated n < d, as per emotion in practice
    files = {
        (kind, emotion): write_images(folder / kind / emotion, random_images(20 + 2 * i + j, counts[kind]), "jpg")
        for j, kind in enumerate(counts)
        for i, emotion in enumerate(emotions)
    }
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = model.layers.register_forward_hook(lambda _m, args, out: seen.append((args[0].clone(), out.clone())))
    try:
        # The project: its decoding, TorchvisionResizeBytes, the paper-code FID on float64 sums.
        extractor = PaperCodeInceptionExtractor(model, INCEPTION_ARTIFACTS)
        ours: dict[str, np.ndarray] = {}
        our_inputs: dict[str, torch.Tensor] = {}
        for kind in counts:
            paths = [p for e in emotions for p in files[kind, e]]
            seen.clear()
            batch = torch.stack([extractor.preprocess(decode_image(p.read_bytes())) for p in paths])
            ours[kind] = extractor(batch)["pool"].astype(np.float64)
            our_inputs[kind] = torch.cat([x for x, _ in seen])[: len(paths)]  # fixed batches are zero-padded
        references, pooled = {}, SumsAccumulator(STAND_IN_DIM)
        for i, emotion in enumerate(emotions):
            accumulator = SumsAccumulator(STAND_IN_DIM)  # as build_reference_stats does under paper code
            accumulator.add(ours["reference"][i * counts["reference"] : (i + 1) * counts["reference"]])
            references[emotion] = accumulator.stats()
            pooled.merge(accumulator)
        labels = [e for e in emotions for _ in range(counts["generated"])]
        overall, per_emotion = paper_code_fid(ours["generated"], labels, references, pooled.stats())

        # torchmetrics, fed as the released code feeds it: PIL -> Resize((299, 299)) -> ToTensor, batches of 32.
        released = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor()])
        loaded = {p: released(Image.open(p).convert("RGB")) for paths in files.values() for p in paths}  # read once

        def inception(name, features_list, feature_extractor_weights_path=None, antialias=True):  # type: ignore[no-untyped-def]
            return TinyTrunkInceptionV3(model.layers, features_list, antialias)

        def torchmetrics_fid_of(scope: Sequence[str]) -> tuple[float, dict[str, tuple[torch.Tensor, np.ndarray]]]:
            with mock.patch.object(torchmetrics_fid, "NoTrainInceptionV3", inception):
                metric = torchmetrics_fid.FrechetInceptionDistance(feature=STAND_IN_DIM, normalize=True)
            fed = {}
            for kind in counts:
                paths = [p for e in scope for p in files[kind, e]]
                seen.clear()
                for start in range(0, len(paths), 32):
                    metric.update(torch.stack([loaded[p] for p in paths[start : start + 32]]), real=kind == "reference")
                fed[kind] = (
                    torch.cat([x for x, _ in seen]),
                    torch.cat([f for _, f in seen]).flatten(1).double().numpy(),
                )
            return float(metric.compute()), fed

        theirs = {emotion: torchmetrics_fid_of([emotion])[0] for emotion in emotions}
        theirs_pooled, fed = torchmetrics_fid_of(emotions)
    finally:
        hook.remove()

    # Premises: the same bytes reach the network ((x * 255).byte(), float, 299 -> 299 resize, (x - 128) / 128),
    # which a custom feature= module would not get: torchmetrics 1.9 hands it the [0, 1] floats.
    for kind in counts:
        assert torch.equal(fed[kind][0], our_inputs[kind])
    assert torchmetrics_custom_module_input_dtype() == torch.float32

    observations, difference = [], {}
    for kind in counts:
        scale, unit = network_bound(list(model.layers), our_inputs[kind])
        difference[kind] = np.abs(fed[kind][1] - ours[kind])
        # each side within gamma_K |W||x| of the exact features, so |difference| <= 2 gamma_K |W||x|
        observations.append(Observation(f"paper code: {kind} features, |difference| / (|W||x|)",
                                        float(np.max(difference[kind] / scale)), 2 * unit,
                                        float(np.max(np.abs(ours[kind]) / scale))))  # fmt: skip

    def tolerance(rows_ref: slice, rows_gen: slice, value: float) -> float:
        # both routes float64 from raw sums + the features' difference; torchmetrics casts its FID to float32
        ref, gen = ours["reference"][rows_ref], ours["generated"][rows_gen]
        tm_ref, tm_gen = fed["reference"][1][rows_ref], fed["generated"][1][rows_gen]
        errors = (difference["reference"][rows_ref], difference["generated"][rows_gen])
        return frechet_bound(ref, gen) + frechet_bound(tm_ref, tm_gen) + feature_perturbation_bound(
            (ref, gen), errors) + U32 * abs(value)  # fmt: skip

    tols = {}
    for i, emotion in enumerate(emotions):
        rows_ref = slice(i * counts["reference"], (i + 1) * counts["reference"])
        rows_gen = slice(i * counts["generated"], (i + 1) * counts["generated"])
        tols[emotion] = tolerance(rows_ref, rows_gen, theirs[emotion])
        value = per_emotion[emotion].value
        observations.append(Observation(f"paper code: {emotion} FID vs torchmetrics", abs(value - theirs[emotion]),
                                        tols[emotion], value))  # fmt: skip
    everything = slice(None)
    observations.append(Observation("paper code: pooled FID vs torchmetrics", abs(overall.value - theirs_pooled),
                                    tolerance(everything, everything, theirs_pooled), overall.value))  # fmt: skip
    mean = overall.extra["mean_over_emotions"]
    observations.append(Observation("paper code: mean over emotions vs torchmetrics",  # mean of tolerances + 2 means
                                    abs(mean - float(np.mean(list(theirs.values())))),
                                    float(np.mean(list(tols.values()))) + 4 * EPS64 * abs(mean), mean))  # fmt: skip
    return observations


def test_paper_code_fid_matches_torchmetrics_frechet_inception_distance(tmp_path: Path) -> None:
    for observation in paper_code_observations(tmp_path):
        observation.check()


# --- 4. exact LPIPS diversity against the lpips package over every pair ----------------------------------------


def lpips_observations() -> list[Observation]:
    trunk_state = ckpt.alexnet_state_dict(seed=4)  # torchvision's layout (alexnet-owt-7be5be79.pth), random
    trunk = alexnet(weights=None)
    trunk.load_state_dict(trunk_state)
    model = build_lpips_alex(trunk, load_lpips_linear(PACKAGE_LINEAR))
    extractor = LpipsExtractor(model, LPIPS_ARTIFACTS, size=LPIPS_SIZE)
    package = package_lpips(trunk_state)
    rng = np.random.default_rng(30)
    groups = METRICS.jackknife_groups
    summaries, package_pairs = {}, {}
    for emotion, count in {"awe": 5, "fear": 4}.items():
        images = [rng.integers(0, 256, (LPIPS_SIZE, LPIPS_SIZE, 3), dtype=np.uint8) for _ in range(count - 1)]
        noise = rng.normal(0.0, 6.0, images[0].shape)
        images.append(np.clip(images[0] + noise, 0, 255).astype(np.uint8))  # a near copy: a small distance
        ours = torch.stack([extractor.preprocess(image) for image in images])  # uint8, scaled in forward
        theirs = torch.cat([lpips.im2tensor(image) for image in images])  # the package's own [-1, 1] scaling
        assert torch.equal(extractor.model_input(ours), theirs)  # premise: a protocol-size image is only rescaled
        accumulator = PairwiseAccumulator(extractor.info.outputs["phi"][0], groups)
        accumulator.add(extractor(ours)["phi"], group_ids(count, groups))
        summaries[emotion] = accumulator.summary()
        pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
        first, second = (list(side) for side in zip(*pairs))
        with torch.no_grad():
            values = package(theirs[first], theirs[second]).flatten().double().numpy()  # lpips.LPIPS.forward
        package_pairs[emotion] = dict(zip(pairs, values))
    overall, per_emotion = lpips_diversity(summaries)

    # Both sides run the same float32 trunk and normalisation on bitwise-equal inputs (asserted above); a pair's
    # value is then a float32 sum of terms >= 0 (squared differences of unit-normalised features times non-negative
    # weights), within gamma_K of its exact value in any order: K = 384 channels (widest layer) + conv1's H x W
    # positions + 5 layers + 4 scalings; the float64 pair sums over phi add gamma_{2 dim}(eps64); x2 for two sides.
    conv1 = (LPIPS_SIZE + 2 * 2 - 11) // 4 + 1
    rtol = 2 * (gamma(384 + conv1 * conv1 + 9, U32) + gamma(2 * extractor.info.outputs["phi"][0], EPS64))
    observations = []
    for emotion, pairs in package_pairs.items():
        expected, value = float(np.mean(list(pairs.values()))), per_emotion[emotion].value
        observations.append(Observation(f"LPIPS {emotion}: mean over all pairs", abs(value - expected),
                                        rtol * expected, value))  # fmt: skip
        worst = 0.0
        for g, replicate in enumerate(summaries[emotion].loo):  # jackknife: the mean without group g's images
            kept = [v for (i, j), v in pairs.items() if i % groups != g and j % groups != g]
            worst = max(worst, abs(replicate - float(np.mean(kept))) / float(np.mean(kept)))
        observations.append(Observation(f"LPIPS {emotion}: jackknife replicates, relative", worst, rtol, value))
    expected = float(np.mean([np.mean(list(p.values())) for p in package_pairs.values()]))
    observations.append(Observation("LPIPS overall: mean over emotions", abs(overall.value - expected),
                                    rtol * expected, overall.value))  # fmt: skip
    return observations


def test_lpips_diversity_matches_the_lpips_package_over_every_pair() -> None:
    for observation in lpips_observations():
        observation.check()


if __name__ == "__main__":  # prints every comparison: the figures in the module docstring
    import tempfile
    import time

    start = time.perf_counter()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        every = [
            *fid_maths_observations(300, 200, 48),
            *fid_maths_observations(300, 30, 48),
            *kid_observations(120, 16),
            *kid_observations(40, 48),
            *eicg_end_to_end_observations(Path(scratch) / "eicg"),
            *paper_code_observations(Path(scratch) / "paper"),
            *lpips_observations(),
        ]
    print("comparison | largest |difference| | tolerance | value")
    for o in every:
        print(f"{o.name} | {o.diff:.1e} | {o.tol:.1e} | {o.value:.3g}")
    print(f"total {time.perf_counter() - start:.0f} s")
