"""``weights fetch``: ``--for`` purposes, every outcome reported past a failure, Hub snapshots in the HF cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_weights_download import NO_WAIT, FileServer, file_server  # noqa: F401 - the loopback server fixture

from emogen_bench.cli import main
from emogen_bench.cli.weights import fetch_selection
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.weights.registry import Registry, load_registry
from emogen_bench.weights.store import HF_CACHE_FOLDER, WeightStore

GOOD, OTHER = b"good weights " * 1000, b"other weights " * 500

TWO_AND_STATS = """
# a comment that must survive
[artifacts.broken-net]
description = "served by nobody"
used_by = ["fid"]
license = "none"
loader = "torchscript"

[[artifacts.broken-net.files]]
name = "broken.pt"
urls = ["BASE/missing.pt"]
pin = "unpinned"

[artifacts.good-net]
description = "served"
used_by = ["sem_c"]
license = "none"
loader = "torchscript"

[[artifacts.good-net.files]]
name = "good.pt"
urls = ["BASE/good.pt"]
pin = "sha256"
sha256 = "GOOD_SHA"
size = GOOD_SIZE

[artifacts.sd-like]
description = "generation only"
used_by = ["generate", "train"]
license = "none"
loader = "torchscript"

[[artifacts.sd-like.files]]
name = "sd.pt"
urls = ["BASE/sd.pt"]
pin = "unpinned"

[artifacts.ref-stats-eicg-v3]
description = "statistics, unpublished"
used_by = ["fid", "kid"]
license = "none"
loader = "reference-stats"

[[artifacts.ref-stats-eicg-v3.files]]
name = "reference-eicg-v3.npz"
urls = []
pin = "unpinned"
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(tmp_path: Path, base_url: str) -> Path:
    text = TWO_AND_STATS.replace("BASE", base_url).replace("GOOD_SHA", sha(GOOD)).replace("GOOD_SIZE", str(len(GOOD)))
    path = tmp_path / "registry.toml"
    path.write_text(text)
    return path


# --- purposes ---------------------------------------------------------------------------------------


def test_evaluate_is_the_metric_models_only() -> None:
    registry = load_registry()
    evaluate = registry.for_purpose("evaluate")
    assert "sd-1.5" not in evaluate and not any(i.startswith("ref-stats-") for i in evaluate)
    assert set(evaluate) == {
        "inception-fid", "alexnet-lpips-trunk", "lpips-alex-v0.1", "clip-vit-l14", "emo-head-clip",
        "resnet50-imagenet-v1", "resnet50-places365", "emo-resnet50-emoset",
    }  # fmt: skip
    assert registry.for_purpose("generate") == ("emo-space", "sd-1.5")
    assert {"sd-1.5", "emo-space", "attr-coefficients", "emo-resnet50-emoset"} <= set(registry.for_purpose("train"))
    assert registry.for_purpose("all") == registry.ids


def test_without_ids_fetch_takes_the_metric_models_as_the_readme_says() -> None:
    registry = load_registry()
    assert fetch_selection(registry, [], None, False) == list(registry.for_purpose("evaluate"))
    assert fetch_selection(registry, [], None, True) == list(registry.ids)  # --all is --for all
    assert fetch_selection(registry, ["emo-space"], None, False) == ["emo-space"]
    for ids, purpose, every in ((["emo-space"], "train", False), ([], "train", True), (["no-such"], None, False)):
        with pytest.raises(UsageError):
            fetch_selection(registry, ids, purpose, every)


# --- every outcome, past a failure ----------------------------------------------------------------------


def test_fetch_goes_on_past_a_failure_and_reports_every_outcome(
    file_server: FileServer, tmp_path: Path, bench_home: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    file_server.files["/good.pt"] = GOOD
    file_server.files["/sd.pt"] = OTHER
    registry = write_registry(tmp_path, file_server.base_url)
    code = main(["weights", "fetch", "--for", "evaluate", "--registry", str(registry), "--quiet"])
    captured = capsys.readouterr()
    assert code == ExitCode.WEIGHTS
    rows = {line.split()[0]: line for line in captured.out.splitlines()[1:] if line.strip()}
    assert "failed" in rows["broken-net"] and "HTTP 404" in rows["broken-net"]
    assert file_server.base_url + "/missing.pt" in rows["broken-net"]
    good = bench_home / "weights" / "good-net" / "good.pt"
    assert rows["good-net"].split()[1] == "ok" and str(good) in rows["good-net"] and good.read_bytes() == GOOD
    assert "sd-like" not in rows and "ref-stats-eicg-v3" not in rows  # not metric models
    assert "1 ok, 1 failed, 0 skipped" in captured.out
    assert captured.err.count("emogen-bench: error:") == 1 and "broken-net" in captured.err


def test_fetch_json_and_exit_0_when_nothing_failed(
    file_server: FileServer, tmp_path: Path, bench_home: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    import json

    file_server.files["/good.pt"] = GOOD
    file_server.files["/sd.pt"] = OTHER
    registry = write_registry(tmp_path, file_server.base_url)
    assert main(["weights", "fetch", "--for", "generate", "--registry", str(registry), "--json"]) == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    [entry] = document["artifacts"]
    assert document["ok"] is True
    assert entry["id"] == "sd-like" and entry["outcome"] == "ok" and entry["bytes"] == len(OTHER)
    assert entry["pinned"] is False and entry["official"] is True  # trust on first use: not pinned


def test_store_fetch_each_keeps_going(file_server: FileServer, tmp_path: Path) -> None:  # noqa: F811
    file_server.files["/good.pt"] = GOOD
    store = WeightStore(tmp_path / "home", registry=Registry.from_toml(write_registry(tmp_path, file_server.base_url)),
                        retry=NO_WAIT)  # fmt: skip
    outcomes = store.fetch_each(["broken-net", "good-net", "ref-stats-eicg-v3"], show_progress=False)
    assert [(o.id, o.outcome) for o in outcomes] == [
        ("broken-net", "failed"), ("good-net", "ok"), ("ref-stats-eicg-v3", "skipped"),
    ]  # fmt: skip
    assert outcomes[1].resolved is not None and outcomes[1].resolved.pinned


# --- Hub snapshots in the user's Hugging Face cache -----------------------------------------------------

CLIP_FILES = {
    "config.json": b'{"model_type": "clip"}',
    "preprocessor_config.json": b'{"crop_size": 224}',
    "model.safetensors": b"not really safetensors, but hashed all the same" * 10,
}


def write_hub_cache(cache: Path, repo_id: str, revision: str, files: dict[str, bytes]) -> Path:
    """huggingface_hub's cache layout: blobs named by hash, snapshots/<rev>/ links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    for name, data in files.items():
        lfs = name.endswith(".safetensors")
        blob = repo / "blobs" / (sha(data) if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_a_snapshot_in_hf_home_is_found_offline_without_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    hf = load_registry().get("clip-vit-l14").hf
    assert hf is not None
    snapshot = write_hub_cache(tmp_path / "hf-home" / "hub", hf.repo_id, hf.revision, CLIP_FILES)

    assert main(["weights", "fetch", "clip-vit-l14", "--offline", "--quiet"]) == ExitCode.OK
    assert str(snapshot) in capsys.readouterr().out
    resolved = WeightStore(offline=True).resolve("clip-vit-l14")
    assert resolved.path == snapshot and resolved.official and resolved.pinned
    assert {f.name: f.sha256 for f in resolved.files} == {n: sha(d) for n, d in CLIP_FILES.items()}
    weights = bench_home / "weights"
    assert not (weights / HF_CACHE_FOLDER).exists()  # no second copy in the benchmark's folder
    assert not any(p.name == "model.safetensors" for p in weights.rglob("*")) if weights.exists() else True


def test_a_snapshot_kept_by_an_earlier_version_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    hf = load_registry().get("clip-vit-l14").hf
    assert hf is not None
    home = tmp_path / "weights"
    snapshot = write_hub_cache(home / HF_CACHE_FOLDER, hf.repo_id, hf.revision, CLIP_FILES)  # a copied old folder
    resolved = WeightStore(home, offline=True).resolve("clip-vit-l14")
    assert resolved.path == snapshot and resolved.official
