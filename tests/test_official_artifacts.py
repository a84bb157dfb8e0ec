"""Loaders against the real EmoGen files (shared/artifacts/emogen-official; skipped where absent).

The numeric checks are published facts (PROTOCOL.md sections 2, 4 and 5), not
values read back from the files.
"""

from __future__ import annotations

import pickletools
from pathlib import Path

import numpy as np
import torch
from tolerances import U32, gamma, softmax_bound

from emogen_bench.artifacts import (
    AttrTables,
    export_attr_tables_json,
    load_attr_coefficients,
    load_attr_tables_json,
    load_attr_vocabulary,
    load_emo_space,
)
from emogen_bench.artifacts.attr_tables import COEFFICIENT_FILES, VOCABULARY_FILES, numpy_array_globals
from emogen_bench.hashing import sha256_file
from emogen_bench.models import LOADERS
from emogen_bench.models.emotion_head import load_emotion_head
from emogen_bench.task import EMOTION_IDS, EMOTION_NAMES

EMO_HEAD_SHA256 = "80f72314e31e10a1e40e6e38687dd81a03e8e3ab2de03832d37e7a280485c998"  # PROTOCOL.md section 4


def _sha256sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` as file name -> hash (the names are unique across sub-folders)."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[Path(name).name] = digest
    return sums


def _pickle_globals(path: Path) -> set[tuple[str, str]]:
    """Every (module, name) a pickle imports, read from its opcodes without unpickling it."""
    found: set[tuple[str, str]] = set()
    pushed: list[object] = []
    memo: dict[int, object] = {}
    for opcode, arg, _ in pickletools.genops(path.read_bytes()):
        if opcode.name == "GLOBAL":
            module, name = str(arg).split(" ", 1)
            found.add((module, name))
            pushed.append(None)
        elif opcode.name == "STACK_GLOBAL":
            name, module = pushed.pop(), pushed.pop()
            found.add((str(module), str(name)))
            pushed.append(None)
        elif opcode.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = pushed[-1] if pushed else None
        elif opcode.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg)))
        elif "UNICODE" in opcode.name or "STRING" in opcode.name:
            pushed.append(arg)
        elif opcode.stack_after:
            pushed.append(None)
    return found


def test_official_emotion_head(official_artifacts: Path) -> None:
    path = official_artifacts / "weights" / "clip_emotion_head.pth"
    assert sha256_file(path) == EMO_HEAD_SHA256 == _sha256sums(official_artifacts)["clip_emotion_head.pth"]
    head = load_emotion_head(path)  # saved from a CUDA device: must load on CPU
    assert head.fc.weight.shape == (8, 768) and head.fc.bias.shape == (8,)
    assert head.fc.weight.device.type == "cpu"
    assert torch.isfinite(head.fc.weight).all()
    with torch.no_grad():
        probabilities = torch.softmax(head(torch.randn(4, 768, generator=torch.Generator().manual_seed(0))), dim=1)
    # each float32 probability within softmax_bound of exact, then a float32 sum of C (gamma_C of about 1)
    probs = probabilities.double().numpy()
    each = softmax_bound(probs, U32).sum(axis=1)
    tol = each + gamma(probs.shape[1], U32) * (1 + each)
    np.testing.assert_array_less(np.abs(probabilities.sum(dim=1).double().numpy() - 1), tol)
    assert LOADERS["emo-head-clip"](path).fc.weight.equal(head.fc.weight)


def test_official_emo_space(official_artifacts: Path) -> None:
    space = load_emo_space(official_artifacts / "emo_space")
    assert list(space) == list(EMOTION_NAMES)
    norms = [float(g.mean.norm()) for g in space.values()]
    average_stds = [float(g.std.mean()) for g in space.values()]
    # Published: norms of the means 12.7-18.3, average std 0.38-0.51 (rounded as published).
    assert min(round(n, 1) for n in norms) == 12.7 and max(round(n, 1) for n in norms) == 18.3
    assert min(round(s, 2) for s in average_stds) == 0.38 and max(round(s, 2) for s in average_stds) == 0.51
    assert all(bool((g.std > 0).all()) for g in space.values())


def test_official_attr_coefficients(official_artifacts: Path) -> None:
    folder = official_artifacts / "dataset_balance"
    tables = load_attr_coefficients(folder, expected_sha256=_sha256sums(official_artifacts))
    objects, scenes = tables["object"], tables["scene"]
    # Published vocabulary sizes (PROTOCOL.md section 2): 409 objects, 254 scenes, 655 unique, 8 shared.
    assert (len(objects), len(scenes)) == (409, 254)
    assert len(set(objects) | set(scenes)) == 655 and len(set(objects) & set(scenes)) == 8
    amusement_park, cemetery = scenes["amusement_park"], scenes["cemetery"]
    assert int(amusement_park.argmax()) == EMOTION_IDS["amusement"]
    assert round(float(amusement_park[EMOTION_IDS["amusement"]]), 3) == 0.967
    assert int(cemetery.argmax()) == EMOTION_IDS["sadness"]
    assert round(float(cemetery[EMOTION_IDS["sadness"]]), 3) == 0.972
    rows = np.stack([*objects.values(), *scenes.values()])
    assert rows.dtype == np.float32 and rows.shape == (663, 8)
    assert np.allclose(rows.sum(axis=1, dtype=np.float64), 1.0, atol=1e-4)


def test_official_pickles_use_exactly_the_allowed_globals(official_artifacts: Path) -> None:
    folder = official_artifacts / "dataset_balance"
    for name in COEFFICIENT_FILES.values():
        used = _pickle_globals(folder / name)
        assert used == {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}
        assert used <= set(numpy_array_globals())
    for name in VOCABULARY_FILES.values():
        assert _pickle_globals(folder / name) == set()  # plain dicts, lists and strings


def test_official_attr_vocabulary(official_artifacts: Path) -> None:
    folder = official_artifacts / "dataset_balance"
    vocabulary = load_attr_vocabulary(folder, expected_sha256=_sha256sums(official_artifacts))
    coefficients = load_attr_coefficients(folder)
    assert len(vocabulary.attributes) == 655
    assert set(vocabulary.attributes) == set(coefficients["object"]) | set(coefficients["scene"])
    assert list(vocabulary.objects_by_emotion) == list(EMOTION_NAMES) == list(vocabulary.scenes_by_emotion)
    listed_objects = {name for names in vocabulary.objects_by_emotion.values() for name in names}
    assert listed_objects <= set(coefficients["object"])
    assert "amusement_park" in vocabulary.scenes_by_emotion["amusement"]
    assert "cemetery" in vocabulary.scenes_by_emotion["sadness"]


def test_official_attr_tables_convert_to_json(official_artifacts: Path, tmp_path: Path) -> None:
    folder = official_artifacts / "dataset_balance"
    sums = _sha256sums(official_artifacts)
    coefficients = load_attr_coefficients(folder, expected_sha256=sums)
    vocabulary = load_attr_vocabulary(folder, expected_sha256=sums)
    sources = {name: sums[name] for name in [*COEFFICIENT_FILES.values(), *VOCABULARY_FILES.values()]}
    out = export_attr_tables_json(AttrTables(coefficients, vocabulary, sources), tmp_path / "attr_tables.json")
    loaded = load_attr_tables_json(out)
    assert loaded.vocabulary == vocabulary and loaded.sources == sources
    for kind in ("object", "scene"):
        assert all(loaded.coefficients[kind][k].tobytes() == v.tobytes() for k, v in coefficients[kind].items())
