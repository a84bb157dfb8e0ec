"""``emogen-bench baseline <name> train|generate`` on tiny components: outputs, settings and exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from baselines.cli import register  # noqa: E402
from emogen_bench.data import prepare_emoset  # noqa: E402
from emogen_bench.demo import write_synthetic_emoset  # noqa: E402
from emogen_bench.errors import BenchError  # noqa: E402
from emogen_bench.submission import read_metadata  # noqa: E402
from emogen_bench.task import EMOTION_NAMES  # noqa: E402


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def _run(argv: list[str]) -> int:
    """Through ``emogen_bench.cli.main`` once the entry point is installed, else through ``register`` directly."""
    if any(e.name == "baseline" for e in metadata.entry_points(group="emogen_bench.commands")):
        from emogen_bench.cli import main

        return main(argv)
    parser = argparse.ArgumentParser(prog="emogen-bench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BenchError as error:
        print(f"emogen-bench: error: {error}", file=sys.stderr)
        return int(error.exit_code)


@pytest.fixture(scope="module")
def emoset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("emoset")
    root = write_synthetic_emoset(work / "emoset")
    prepare_emoset(root, work / "index", show_progress=False)
    return root, work / "index"


def test_sd_generate_writes_a_submission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sd"
    code = _run(["baseline", "sd", "generate", "--tiny", "--device", "cpu", "--out", str(out), "--per-emotion", "2",
                 "--steps", "1", "--size", "64", "--set", "template_set=evokes", "-q", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"baseline": "sd", "submission": str(out)}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        f"{e}/{e}_{i:04d}.png" for e in EMOTION_NAMES for i in range(2)
    )  # validity at >= 256 px is checked in test_baselines_common.py / test_baselines_sd_ti.py
    metadata = read_metadata(out / "submission.json")
    assert metadata.steps == 1 and metadata.resolution == (64, 64) and "a photo that evokes fear" in metadata.notes


def test_ti_train_resume_and_generate_checks(
    emoset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, index = emoset
    out = tmp_path / "ti"
    train = ["baseline", "textual-inversion", "train", "--tiny", "--device", "cpu", "--index", str(index),
             "--emoset-root", str(root), "--out", str(out), "--steps", "1", "--size", "64", "--seed", "2",
             "--set", "emotions=amusement", "--set", "gradient_accumulation_steps=1", "-q"]
    assert _run(train) == 0
    assert f"checkpoint: {out}" in _said(capsys)
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["max_steps"] == 1 and config["settings"]["resolution"] == 64
    assert config["settings"]["seed"] == 2 and config["settings"]["emotions"] == ["amusement"]
    assert config["settings"]["cpu"] is True  # --device cpu reaches accelerate, which would pick a GPU otherwise
    assert config["sd"]["model_id"] == "tiny-sd"
    assert _run(train) == 2 and "--resume" in _said(capsys)
    assert _run([*train, "--resume"]) == 0
    generate = ["baseline", "textual-inversion", "generate", "--device", "cpu", "--out", str(tmp_path / "sub"),
                "--per-emotion", "2", "-q"]
    assert _run([*generate, "--checkpoint", str(out)]) == 2  # the model comes from the checkpoint: tiny
    assert "no learned token for awe" in _said(capsys)
    assert _run(generate) == 2 and "needs --checkpoint" in _said(capsys)
    assert _run([*generate, "--checkpoint", str(tmp_path / "none")]) == 2


def test_train_device_becomes_the_cpu_setting() -> None:
    from baselines.cli import train_settings

    def parsed(*argv: str) -> dict:
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["baseline", "dreambooth", "train", "--index", "i", "--emoset-root", "e",
                                  "--out", "o", *argv])  # fmt: skip
        return train_settings(args)

    assert parsed("--device", "cpu")["cpu"] is True
    assert "cpu" not in parsed() and "cpu" not in parsed("--device", "cuda")
    with pytest.raises(BenchError, match="CUDA_VISIBLE_DEVICES"):
        parsed("--device", "cuda:1")  # accelerate would train on cuda:0 regardless


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "novalue"], "expected KEY=VALUE"),
        (["--set", "colour=red"], "unknown textual-inversion setting(s) colour"),
        (["--set", "max_steps=3"], "max_steps given both as an option and with --set"),
        (["--set", "learning_rate=fast"], "learning_rate='fast': expected a number"),
    ],
)
def test_settings_errors_exit_2(
    emoset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    root, index = emoset
    argv = ["baseline", "textual-inversion", "train", "--tiny", "--device", "cpu", "--index", str(index),
            "--emoset-root", str(root), "--out", str(tmp_path / "x"), "--steps", "1", *extra]
    assert _run(argv) == 2
    assert message in _said(capsys)
    assert not (tmp_path / "x").exists()


def test_usage_and_weights_errors(emoset: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, index = emoset
    assert _run(["baseline", "sd", "train", "--index", str(index), "--emoset-root", str(root), "--out",
                 str(tmp_path / "x")]) == 2
    assert "nothing to train" in _said(capsys)
    assert _run(["baseline", "textual-inversion", "train", "--tiny", "--index", str(tmp_path / "missing"),
                 "--emoset-root", str(root), "--out", str(tmp_path / "y")]) == 2
    assert "--index" in _said(capsys)
    code = _run(["baseline", "sd", "generate", "--device", "cpu", "--out", str(tmp_path / "z"),
                 "--sd-model", "nobody/no-such-model"])
    assert code == 3 and "not available locally" in _said(capsys)
    with pytest.raises(SystemExit) as exit_info:
        _run(["baseline", "nope", "generate", "--out", str(tmp_path / "w")])
    assert exit_info.value.code == 2
