"""Issue 13 item 5: what a new method author meets on the validate -> evaluate path.

FID/KID asked for without reference statistics, the "version" hint of submission.json, the Python example
of docs/results.md, ``evaluate --help``, the demo's FID, and an evaluation resumed after an interruption.
Tiny models built in code throughout; no weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from emogen_bench.cache import FeatureCache
from emogen_bench.cli import main
from emogen_bench.config import EvalConfig
from emogen_bench.errors import ExitCode, UsageError
from emogen_bench.evaluate import evaluate
from emogen_bench.features import tiny_extractors
from emogen_bench.features.base import FeatureExtractor
from emogen_bench.reference_stats import build_hint
from emogen_bench.submission import write_example_submission
from emogen_bench.submission.metadata import check_metadata
from emogen_bench.task import PROTOCOL

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_submission(tmp_path_factory.mktemp("usability") / "submission", per_emotion=2)


# --- a. FID/KID without reference statistics ----------------------------------------------------


@pytest.mark.parametrize("metrics", ["fid", "kid", "fid,kid", "fid,emo_a"])
def test_fid_or_kid_by_name_without_reference_is_a_usage_error_and_writes_nothing(
    submission: Path, bench_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: str
) -> None:
    out = tmp_path / "results.json"
    code = main(["evaluate", str(submission), "--per-emotion", "2", "--metrics", metrics, "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert build_hint(PROTOCOL) in captured.err and f"--reference-stats ref-stats-{PROTOCOL}" in captured.err
    assert "nothing was evaluated" in captured.err and captured.out == ""
    assert not out.exists() and not (bench_home / "results").exists()


def test_the_api_refuses_only_fid_and_kid_without_reference(submission: Path, bench_home: Path) -> None:
    config = EvalConfig(metrics=("fid", "kid"), per_emotion=2, device="cpu", show_progress=False)
    with pytest.raises(UsageError, match=r"FID and KID need reference statistics: give --reference-stats"):
        evaluate(submission, config, extractors=tiny_extractors(["inception"]))
    assert not (bench_home / "features").exists()  # refused before any image was read or cached


# --- b. the "version" key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "meant"),
    [("version", "method_version"), ("Version", "method_version"), ("guidance_scale", "guidance"),
     ("num_inference_steps", "steps"), ("method-version", "method_version"), ("sedes", "seeds")],
)  # fmt: skip
def test_unknown_keys_point_to_the_key_meant(key: str, meant: str) -> None:
    [issue] = check_metadata({"method": "m", key: "1"})
    assert issue.key == key and issue.severity == "warning"
    assert issue.message == f"unknown key, ignored (did you mean {meant!r}?)"


def test_validate_hints_method_version_for_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_example_submission(tmp_path / "submission", per_emotion=2)
    metadata = folder / "submission.json"
    metadata.write_text(metadata.read_text(encoding="utf-8").replace('"method":', '"version": "1.2", "method":'))
    assert main(["validate", str(folder), "--per-emotion", "2"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "did you mean 'method_version'?" in out and "schema_version'?" not in out


# --- c. the Python example of docs/results.md -----------------------------------------------------


def test_no_doc_calls_the_module_as_a_function() -> None:
    lines = [(path.name, line) for path in sorted(DOCS.glob("*.md")) for line in path.read_text("utf-8").splitlines()]
    offenders = [f"{name}: {line}" for name, line in lines if "emogen_bench.evaluate(" in line]
    assert offenders == []


def test_the_results_doc_example_runs(
    bench_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "results.md").read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1 and "from emogen_bench.evaluate import evaluate" in blocks[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "docs/results.md", "exec"), namespace)  # noqa: S102 - the documentation's own code
    printed = capsys.readouterr().out.split()
    assert printed[0] == repr(namespace["document"]["metrics"]["overall"]["emo_a"]["value"])
    assert printed[1].startswith("sha256:") and (tmp_path / "example-submission").is_dir()


# --- d. evaluate --help ---------------------------------------------------------------------------


def test_evaluate_help_prints_a_plain_percent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "95% confidence intervals" in text and "%%" not in text


# --- f. the demo's FID ----------------------------------------------------------------------------


def test_the_demo_shows_a_real_fid_gap(tmp_path: Path) -> None:
    from emogen_bench.demo import run_demo
    from emogen_bench.report import format_value

    document = run_demo(tmp_path / "demo", per_emotion=2, show_progress=False).result.to_dict()
    metrics = document["metrics"]
    fid, kid = metrics["overall"]["fid"], metrics["overall"]["kid"]
    assert format_value("fid", fid["value"]) != "0.00" and fid["value"] > 0.1
    assert 0 < fid["ci95"][0] < fid["value"] < fid["ci95"][1] and "clipped" not in fid
    assert kid["value"] > 0.001
    assert all(values["fid"]["value"] > 0.1 for values in metrics["per_emotion"].values())


# --- g. resuming an interrupted evaluation --------------------------------------------------------


class InterruptedExtractor(FeatureExtractor):
    """``inner`` itself for ``calls`` model batches; then stopped by Ctrl-C, as a user stops a long run."""

    def __init__(self, inner: FeatureExtractor, calls: int) -> None:
        self.inner, self.calls = inner, calls
        self.info = inner.info
        self._preprocessor = inner.preprocessor

    def to(self, device: torch.device | str) -> InterruptedExtractor:
        self.inner.to(device)
        return self

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.inner.forward(batch)


RESUME = EvalConfig(metrics=("lpips", "sem_c"), per_emotion=4, device="cpu", batch_size=16, num_workers=0,
                    show_progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    """Stopped by Ctrl-C in LPIPS' second forward (the second of two loader batches of 16 images), then run
    again on the same cache: the feature counts of the resumed run."""
    base = tmp_path_factory.mktemp("resume")
    folder = write_example_submission(base / "submission", per_emotion=RESUME.per_emotion)
    extractors = tiny_extractors(["lpips", "semantic"])
    cache = FeatureCache(base / "cache")
    stopped = {**extractors, "lpips": InterruptedExtractor(extractors["lpips"], calls=1)}
    with pytest.raises(KeyboardInterrupt):
        evaluate(folder, RESUME, extractors=stopped, cache=cache)
    return evaluate(folder, RESUME, extractors=extractors, cache=cache).features


def test_resume_keeps_every_sem_c_feature_computed_before_the_interruption(resumed: dict) -> None:
    assert resumed["semantic"] == {"computed": 0, "cached": 32}


def test_resume_keeps_the_lpips_summary_of_every_emotion_finished_before_it(resumed: dict) -> None:
    assert resumed["lpips"] == {"computed": 16, "cached": 16}  # the first 4 emotions' summaries survived
