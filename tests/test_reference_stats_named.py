"""Reference statistics by name: ``ref-stats-<protocol>`` in the registry, fetched and verified like a weight."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from test_reference_stats import ToyInception, build, make_reference
from test_weights_download import NO_WAIT, FileServer, file_server  # noqa: F401 - the loopback server fixture

from emogen_bench.cache import FeatureCache
from emogen_bench.cli import main
from emogen_bench.config import EvalConfig
from emogen_bench.errors import ExitCode, WeightsError
from emogen_bench.evaluate import evaluate
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.reference_stats import load_reference_stats
from emogen_bench.submission import write_example_submission
from emogen_bench.weights.registry import Registry, load_registry, reference_stats_id

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

NAME = "ref-stats-eicg-v3"


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny statistics of the fake EmoSet, built with the toy Inception (protocol eicg-v3)."""
    base = tmp_path_factory.mktemp("named")
    build(make_reference(base), base / "reference.npz")
    return base / "reference.npz"


def test_every_protocol_has_unpublished_official_statistics_in_the_registry() -> None:
    registry = load_registry()
    for protocol in PROTOCOLS:
        spec = registry.get(reference_stats_id(protocol))
        assert spec.loader == "reference-stats" and not spec.published and not spec.pinned
    assert reference_stats_id("eicg-v3") == NAME


def test_the_name_while_unpublished_exits_3_with_the_build_command(
    bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submission = write_example_submission(tmp_path / "sub", per_emotion=2)
    out = tmp_path / "results.json"
    args = ["evaluate", str(submission), "--per-emotion", "2", "--metrics", "fid", "--reference-stats", NAME,
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == ExitCode.WEIGHTS
    err = capsys.readouterr().err
    assert "not published yet" in err and "emogen-bench reference-stats build --index DIR" in err and NAME in err
    assert not out.exists()


def test_the_python_api_resolves_the_name_too(tmp_path: Path, bench_home: Path) -> None:
    submission = write_example_submission(tmp_path / "sub", per_emotion=2)
    config = EvalConfig(metrics=("fid",), per_emotion=2, reference_stats=Path(NAME), device="cpu", num_workers=0,
                        show_progress=False)  # fmt: skip
    with pytest.raises(WeightsError, match="not published yet"):
        evaluate(submission, config, extractors={"inception": ToyInception()}, cache=FeatureCache(enabled=False))


def test_publish_entry_then_fetch_by_name_verifies_and_evaluate_uses_it(
    stats_file: Path, file_server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    url = file_server.base_url + "/reference-eicg-v3.npz"
    file_server.files["/reference-eicg-v3.npz"] = stats_file.read_bytes()
    assert main(["reference-stats", "publish-entry", str(stats_file), "--url", url]) == ExitCode.OK
    entry = capsys.readouterr().out
    digest = hashlib.sha256(stats_file.read_bytes()).hexdigest()
    assert f'sha256 = "{digest}"' in entry and f"size = {stats_file.stat().st_size}" in entry
    assert "protocol eicg-v3" in entry and "split all" in entry and "EmoSet index: sha256:" in entry
    assert "python " in entry and "numpy " in entry and "SMOKE" in entry  # the toy model is flagged
    assert tomllib.loads(entry)["artifacts"][NAME]["files"][0]["pin"] == "sha256"

    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(entry)
    from emogen_bench.weights.store import WeightStore

    store = WeightStore(tmp_path / "home", registry=Registry.from_toml(registry_path), retry=NO_WAIT)
    stats = load_reference_stats(NAME, store=store)
    assert stats.sha256 == digest and stats.path == tmp_path / "home" / NAME / "reference-eicg-v3.npz"
    assert file_server.hits() == 1
    assert load_reference_stats(NAME, store=store).sha256 == digest and file_server.hits() == 1  # cached, checked

    submission = write_example_submission(tmp_path / "sub", per_emotion=2)
    config = EvalConfig(metrics=("fid", "kid"), per_emotion=2, device="cpu", num_workers=0, show_progress=False)
    result = evaluate(submission, config, extractors={"inception": ToyInception()}, reference=stats,
                      cache=FeatureCache(enabled=False))  # fmt: skip
    document = result.to_dict()
    assert document["reference"]["sha256"] == digest
    assert document["metrics"]["overall"]["fid"]["value"] is not None


def test_bytes_that_differ_from_the_published_hash_are_refused(
    stats_file: Path, file_server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    url = file_server.base_url + "/reference-eicg-v3.npz"
    assert main(["reference-stats", "publish-entry", str(stats_file), "--url", url]) == ExitCode.OK
    registry_path = tmp_path / "registry.toml"
    registry_path.write_text(capsys.readouterr().out)
    data = bytearray(stats_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, same size
    file_server.files["/reference-eicg-v3.npz"] = bytes(data)
    from emogen_bench.weights.store import WeightStore

    store = WeightStore(tmp_path / "home", registry=Registry.from_toml(registry_path), retry=NO_WAIT)
    with pytest.raises(WeightsError, match="sha256"):
        load_reference_stats(NAME, store=store)
    assert not (tmp_path / "home" / NAME / "reference-eicg-v3.npz").exists()


def test_a_path_still_works_and_an_unknown_name_lists_the_official_ones(stats_file: Path) -> None:
    assert load_reference_stats(stats_file).sha256 == hashlib.sha256(stats_file.read_bytes()).hexdigest()
    with pytest.raises(Exception, match="ref-stats-eicg-v3, ref-stats-emogen-paper-code"):
        load_reference_stats("ref-stats-eicg-v9")
