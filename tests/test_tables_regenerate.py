"""``emogen-bench tables regenerate``: plan files, the dry run, and the smoke plan end to end, twice and after a crash.

The smoke plan runs once per module (every row of the three tables, tiny models, synthetic data); the
tests after it read that work folder and run it again, so the whole file stays around a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import stat
from pathlib import Path

import pytest
from hostile_files import fifo

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode, UsageError, WeightsError
from emogen_bench.protocols import PAPER_CODE, PROTOCOLS
from emogen_bench.submission import validate_submission
from leaderboard import regenerate
from leaderboard.entries import SMOKE_ENTRY_SCHEMA, entry_path
from leaderboard.regenerate import ROW_STAGES, dry_run_report, load_plan, plan_stages, run_plan
from leaderboard.regenerate.cli import register
from leaderboard.regenerate.plan import BASELINE_SETTINGS, with_data_paths

REPO = Path(__file__).resolve().parents[1]
PLANS = REPO / "leaderboard" / "plans"
PUBLISHED = REPO / "leaderboard" / "entries"
METRICS = PROTOCOLS[PAPER_CODE].metrics

TINY_PLAN = """
name = "little"
title = "A little plan"
protocol = "emogen-paper-code"
per_emotion = 2
seed = 0
tiny = true
emoset = "synthetic"
index = "synthetic"
reference = "smoke-reference"

[sd]
model = "tiny"

[tables.main]
title = "Main"

[[rows]]
id = "stable-diffusion"
label = "Stable Diffusion"
method = "sd"
tables = ["main"]
cost = { generate = 0.5, evaluate = 0.25 }
generate = { steps = 1 }

[[rows]]
id = "emogen"
label = "EmoGen"
method = "emogen"
tables = ["main"]
cost = { train = 1.0, generate = 0.5, evaluate = 0.25 }
train = { max_steps = 1 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _stamps(root: Path, pattern: str) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in sorted(root.glob(pattern))}


def _command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emogen-bench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


# ---- plan files ----------------------------------------------------------------------------------------------


def test_the_shipped_plans_load_and_cite_the_published_entries() -> None:
    plans = {name: load_plan(PLANS / f"{name}.toml") for name in ("main", "supplement", "ablations", "smoke")}
    assert [row.method for row in plans["main"].rows] == ["sd", "textual-inversion", "dreambooth", "emogen"]
    assert {row.method for row in plans["supplement"].rows} == {"dreambooth", "caption-sd", "emogen"}
    assert {row.method for row in plans["ablations"].rows} == {"emogen"}
    for name in ("main", "supplement", "ablations"):
        plan = plans[name]
        assert plan.protocol == PAPER_CODE and plan.per_emotion == 1000 and not plan.tiny
        for row in plan.rows:
            if row.published is not None:
                assert entry_path(PUBLISHED, row.published).is_file(), row.published
            assert all(cost > 0 for stage, cost in row.cost.items()), (name, row.id)
    # the published numbers of the ablations are not known: only the full method cites one
    assert [row.id for row in plans["ablations"].rows if row.published] == ["emogen"]
    # the smoke plan has every row of the three tables, each in the same tables
    smoke = plans["smoke"]
    assert smoke.tiny and smoke.per_emotion == 2
    full_rows = {(row.id, table) for name in ("main", "supplement", "ablations") for row in plans[name].rows
                 for table in row.tables}  # fmt: skip
    assert {(row.id, table) for row in smoke.rows for table in row.tables} == full_rows
    for row in smoke.rows:
        twin = next(r for name in ("main", "supplement", "ablations") for r in plans[name].rows if r.id == row.id)
        assert (row.method, row.published) == (twin.method, twin.published)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('name = "little"', 'name = "little"\ncolour = "blue"', "unknown key(s) colour"),
        ('protocol = "emogen-paper-code"', 'protocol = "nope"', "protocol: unknown protocol 'nope'"),
        ("per_emotion = 2", "per_emotion = 1", "per_emotion: expected 2 to 1000"),
        ("seed = 0", 'seed = "zero"', "seed: expected an integer"),
        ('reference = "smoke-reference"', 'reference = "stats.npz"', "reference: a tiny plan uses 'smoke-reference'"),
        ('model = "tiny"', 'model = "stable-diffusion-v1-5/stable-diffusion-v1-5"', "sd.model: a tiny plan"),
        ('method = "sd"', 'method = "midjourney"', "rows[0].method: unknown method 'midjourney'"),
        ('id = "stable-diffusion"', 'id = "Stable Diffusion"', "rows[0].id: 'Stable Diffusion' must be"),
        ('id = "stable-diffusion"', 'id = "emogen"', "rows: row id(s) emogen used more than once"),
        ('tables = ["main"]\ncost = { generate', 'tables = ["extra"]\ncost = { generate', "rows[0].tables"),
        ("generate = { steps = 1 }", "generate = { per_emotion = 5 }", "rows[0].generate: per_emotion are set once"),
        ("train = { max_steps = 1 }", "train = { max_step = 1 }", "rows[1] (id 'emogen') train: unknown emogen"),
        ("cost = { generate = 0.5, evaluate = 0.25 }", "cost = { generate = 0.5 }", "rows[0].cost.evaluate: required"),
        (
            "cost = { generate = 0.5, evaluate = 0.25 }",
            "cost = { generate = -1, evaluate = 0.25 }",
            "rows[0].cost.generate: expected GPU hours, a finite number >= 0",
        ),
        ("generate = 0.5, evaluate", "generate = nan, evaluate", "rows[0].cost.generate: expected GPU hours, a finite"),
        ("generate = 0.5, evaluate", "generate = inf, evaluate", "rows[0].cost.generate: expected GPU hours, a finite"),
        ("[tables.main]", "[costs]\ndata = -inf\n\n[tables.main]", "costs.data: expected GPU hours, a finite number"),
        ("[tables.main]", "[resources]\ncpus = nan\n\n[tables.main]", "resources.cpus: expected a whole number >= 0"),
        ("[tables.main]", "[resources]\ncpus = 1.5\n\n[tables.main]", "resources.cpus: expected a whole number >= 0"),
        ("[tables.main]", "[evaluate]\nbatch_size = 0\n\n[tables.main]", "evaluate.batch_size: expected batch_size"),
        ("[tables.main]", "[emogen.prep]\nstage1_steps = 0\n\n[tables.main]", "emogen.prep.stage1_steps: expected a"),
        ("generate = { steps = 1 }", "generate = { steps = 1 }\ntrain = { max_steps = 1 }",
         "rows[0] (id 'stable-diffusion') train: the sd baseline does not train"),
        ("generate = { steps = 1 }", "generate = { steps = 1, colour = 2 }",
         "rows[0] (id 'stable-diffusion') generate: unknown sd setting(s) colour"),
        ("generate = { steps = 1 }", "generate = { steps = 1, guidance = nan }",
         "rows[0] (id 'stable-diffusion') generate: guidance: expected finite numbers, not nan or inf"),
        ("train = { max_steps = 1 }", 'train = { max_steps = "1" }',
         "rows[1] (id 'emogen') train: emogen setting max_steps='1': expected an integer"),
        (
            "cost = { generate = 0.5, evaluate = 0.25 }",
            "cost = { train = 1, generate = 0.5, evaluate = 0.25 }",
            "rows[0].cost: unknown key(s) train",
        ),
        ('label = "EmoGen"', 'label = "EmoGen"\ncolour = "red"', "rows[1]: unknown key(s) colour"),
        ("[tables.main]", "[evaluate]\njpeg_quality = 101\n\n[tables.main]", "evaluate.jpeg_quality: expected 0"),
        ("[tables.main]", '[emogen]\nspace = "official"\n\n[tables.main]', "emogen.space: a tiny plan trains"),
        ('title = "Main"', "", "tables.main.title: required"),
        ("tiny = true", "tiny = false", "per_emotion: a full-size plan makes leaderboard entries"),
        ('title = "A little plan"', 'title = "A little plan', "not valid TOML"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in TINY_PLAN
    path = _write(tmp_path, TINY_PLAN.replace(old, new, 1))
    with pytest.raises(UsageError) as caught:
        load_plan(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_every_setting_problem_of_every_row_is_listed_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = TINY_PLAN.replace("generate = { steps = 1 }", 'generate = { steps = "many" }') + """
[[rows]]
id = "dreambooth"
label = "DreamBooth"
method = "dreambooth"
tables = ["main"]
cost = { train = 1.0, generate = 0.5, evaluate = 0.25 }
train = { mixed_precision = "fp8", images = 5 }
generate = { width = 250 }

[[rows]]
id = "textual-inversion"
label = "Textual Inversion"
method = "textual-inversion"
tables = ["main"]
cost = { train = 1.0, generate = 0.5, evaluate = 0.25 }
train = { colour = "blue", flip_p = 2.0 }
generate = { prompt_template = "a photo" }
"""
    text = text.replace("train = { max_steps = 1 }", 'train = { max_steps = 1, adam_betas = ["0.9", 0.999] }\n'
                        'generate = { prompt = "a photo of nothing" }')  # fmt: skip
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 7 problem(s) in the rows' settings, checked as each method will read them")
    for expected in [
        "rows[0] (id 'stable-diffusion') generate: sd setting steps='many': expected an integer",
        "rows[1] (id 'emogen') train: emogen setting adam_betas=['0.9', 0.999]: expected a list (e.g. [0.9, 0.999])",
        "rows[1] (id 'emogen') generate: the prompt must contain the emotion token",
        "rows[2] (id 'dreambooth') train: dreambooth setting mixed_precision='fp8': expected one of no, fp16, bf16",
        "rows[2] (id 'dreambooth') generate: width and height must be positive multiples of 8, got 250x512",
        "rows[3] (id 'textual-inversion') train: unknown textual-inversion setting(s) colour",
        "rows[3] (id 'textual-inversion') generate: textual-inversion setting prompt_template must contain {token}",
    ]:
        assert f"\n  - {expected}" in message, expected
    work = tmp_path / "work"
    assert main(["tables", "regenerate", str(path), "--workdir", str(work), "--dry-run"]) == ExitCode.USAGE
    assert "7 problem(s) in the rows' settings" in capsys.readouterr().err
    assert not work.exists()


def test_every_baseline_has_its_settings_classes() -> None:
    from baselines.common import BASELINES

    assert set(BASELINE_SETTINGS) == set(BASELINES)


def test_a_plan_that_is_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    with fifo(tmp_path / "plan.toml", TINY_PLAN.encode()) as pipe:
        with pytest.raises(UsageError, match=r"plan.toml: the plan is a FIFO \(named pipe\), not a regular file"):
            load_plan(pipe)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'title = "\xff"', "not UTF-8 text"), (b"x = " + b"[" * 1000 + b"]" * 1000, "nested")],
    ids=["not UTF-8", "deep nesting"],
)
def test_a_plan_python_cannot_take_is_a_usage_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=f"{path}: the plan .*{expected}"):
        load_plan(path)


def test_a_fifo_marker_in_the_work_folder_is_refused_by_the_dry_run(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, TINY_PLAN))
    work = tmp_path / "work"
    work.mkdir()
    marker = json.dumps({"format": regenerate.WORKDIR_FORMAT, "version": 1, "tiny": True}).encode()
    with fifo(work / "regenerate.json", marker) as pipe:
        with pytest.raises(UsageError, match=r"regenerate.json: the work folder marker is a FIFO \(named pipe\)"):
            dry_run_report(plan, work)
        assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_a_good_plan_loads_with_its_defaults(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, TINY_PLAN))
    assert plan.name == "little" and plan.tables == {"main": "Main"} and plan.published is None
    assert plan.emogen["encoder"] == plan.emogen["space"] == plan.emogen["confidence"] == "train"
    assert plan.evaluate.jpeg_quality == 0 and plan.evaluate.pairs == 10
    sd, emogen = plan.rows
    assert sd.cost == {"generate": 0.5, "evaluate": 0.25} and dict(sd.generate) == {"steps": 1}
    assert emogen.cost == {"train": 1.0, "generate": 0.5, "evaluate": 0.25}
    with pytest.raises(UsageError, match="plan .* does not exist"):
        load_plan(tmp_path / "missing.toml")


# ---- the dry run ---------------------------------------------------------------------------------------------


def test_the_dry_run_lists_every_stage_and_its_gpu_hours_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = load_plan(PLANS / "main.toml")
    work = tmp_path / "work"
    lines = dry_run_report(plan, work)
    text = "\n".join(lines)
    for row in plan.rows:
        for stage in ROW_STAGES:
            if stage != "train" or "train" in row.cost:
                expected_cost = row.cost.get(stage, 0.0)
                line = next(line for line in lines if line.startswith(f"{row.id}/{stage} "))
                assert f"{expected_cost:.2f}" in line and (" run " in line)
    assert "stable-diffusion/train" not in text  # the prompt baseline does not train
    total = sum(sum(row.cost.values()) for row in plan.rows)
    assert f"{total:.2f} to run, {total:.2f} for the whole plan" in text
    assert "missing data (needed before a real run): emoset" in text
    assert not work.exists()
    assert run_plan(plan, work, dry_run=True).ran == ()
    assert _command(["tables", "regenerate", str(PLANS / "main.toml"), "--workdir", str(work), "--dry-run",
                     "--rows", "dreambooth"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "dreambooth/train" in printed and "emogen/train" not in printed
    assert not work.exists()


def _digests(plan, work: Path) -> dict[str, str]:
    """Each stage's digest, every upstream stage given the same run id (as after one complete run)."""
    stages = plan_stages(plan, plan.rows, work)
    return {stage.key: regenerate.stage_digest(stage, {f"{o}/{n}": "run" for o, n in stage.upstream})
            for stage in stages}  # fmt: skip


def test_new_reference_statistics_rerun_only_the_evaluation(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "main.toml")
    work = tmp_path / "work"
    (work / "index").mkdir(parents=True)
    (work / "index" / "index.csv").write_text("id,path\n", encoding="utf-8")
    reference = work / "reference-paper-code.npz"
    reference.write_bytes(b"first statistics")
    before = _digests(plan, work)
    reference.write_bytes(b"statistics rebuilt")
    after = _digests(plan, work)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {f"{row.id}/evaluate" for row in plan.rows}  # training and generation (GPU hours) are kept
    (work / "index" / "index.csv").write_text("id,path\nnew,row.jpg\n", encoding="utf-8")
    retrained = {key for key, digest in _digests(plan, work).items() if digest != after[key]}
    assert {f"{row.id}/train" for row in plan.rows if "train" in row.cost} <= retrained
    assert "stable-diffusion/generate" not in retrained  # the prompt baseline reads no training data


def test_a_workdir_with_foreign_files_is_refused(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, TINY_PLAN))
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a work folder"):
        run_plan(plan, work, show_progress=False)
    with pytest.raises(UsageError, match="unknown row id"):
        run_plan(plan, tmp_path / "other", rows=["dall-e"], show_progress=False)
    assert (work / "notes.txt").read_text() == "mine" and not (tmp_path / "other").exists()
    full = tmp_path / "full"
    full.mkdir()
    marker = {"format": regenerate.WORKDIR_FORMAT, "version": 1, "tiny": False}
    (full / "regenerate.json").write_text(json.dumps(marker))
    with pytest.raises(UsageError, match="holds full-size plan runs and this plan is tiny"):
        run_plan(plan, full, show_progress=False)


# ---- the smoke plan end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[regenerate.Plan, Path, regenerate.RunSummary]:
    plan = load_plan(PLANS / "smoke.toml")
    published_before = _stamps(PUBLISHED, "**/*")
    work = tmp_path_factory.mktemp("smoke") / "work"
    summary = run_plan(plan, work, show_progress=False, log=lambda line: None)
    assert _stamps(PUBLISHED, "**/*") == published_before  # smoke entries never go to leaderboard/entries
    return plan, work, summary


def test_the_smoke_plan_runs_every_row_of_the_three_tables(smoke_run) -> None:
    plan, work, summary = smoke_run
    assert summary.ran == tuple(stage.key for stage in plan_stages(plan, plan.rows, work))
    for row in plan.rows:
        for stage in ROW_STAGES:
            if stage != "train" or "train" in row.cost:
                assert (work / "stages" / row.id / f"{stage}.json").is_file()
        report = validate_submission(work / "rows" / row.id / "submission", per_emotion=2, show_progress=False)
        assert report.valid, (row.id, report.problems)
        results = json.loads((work / "rows" / row.id / "results.json").read_text())
        assert results["smoke"] is True and results["protocol"] == PAPER_CODE
        assert results["not_computed"] == {}  # the JPEG copy gives LPIPS and Sem-D their *jpg files
        entry = json.loads((work / "entries" / PAPER_CODE / f"{row.id}.json").read_text())
        assert entry["schema"] == SMOKE_ENTRY_SCHEMA and entry["status"] == "smoke"
        assert entry["method"] == f"{row.label} [SMOKE]"
        for key in METRICS:
            assert entry["metrics"]["overall"][key]["value"] == results["metrics"]["overall"][key]["value"]


def test_the_smoke_tables_set_each_row_beside_its_published_numbers(smoke_run) -> None:
    plan, work, summary = smoke_run
    markdown = (work / "tables" / "smoke-smoke.md").read_text()
    assert markdown == summary.markdown
    assert regenerate.SMOKE_BANNER in markdown
    for title in plan.tables.values():
        assert f"## {title} [SMOKE]" in markdown
    rows = list(csv.DictReader(io.StringIO((work / "tables" / "smoke-smoke.csv").read_text())))
    assert len(rows) == sum(len(row.tables) for row in plan.rows) * len(METRICS)
    assert {row["smoke"] for row in rows} == {"SMOKE"}
    for line in rows:
        row = plan.row(line["row"])
        entry = json.loads((work / "entries" / PAPER_CODE / f"{row.id}.json").read_text())
        assert float(line["regenerated"]) == entry["metrics"]["overall"][line["metric"]]["value"]
        if row.published is None:
            assert line["published"] == "" and line["published_entry"] == ""
        else:
            published = json.loads(entry_path(PUBLISHED, row.published).read_text())
            assert float(line["published"]) == published["metrics"]["overall"][line["metric"]]["value"]
    sd_line = next(line for line in markdown.splitlines() if line.startswith("| stable-diffusion |"))
    assert "Stable Diffusion [SMOKE]" in sd_line and "/ 44.05 |" in sd_line and "/ 70.77% |" in sd_line


def test_a_second_run_runs_nothing_and_prints_the_same_table(smoke_run, capsys: pytest.CaptureFixture[str]) -> None:
    plan, work, first = smoke_run
    before = {**_stamps(work, "stages/**/*.json"), **_stamps(work, "rows/**/*.png"),
              **_stamps(work, "entries/**/*.json"), **_stamps(work, "tables/*")}  # fmt: skip
    assert _command(["tables", "regenerate", str(plan.path), "--workdir", str(work), "--quiet"]) == 0
    captured = capsys.readouterr()
    after = {**_stamps(work, "stages/**/*.json"), **_stamps(work, "rows/**/*.png"),
             **_stamps(work, "entries/**/*.json"), **_stamps(work, "tables/*")}  # fmt: skip
    assert after == before
    assert captured.out == first.markdown
    assert "stages run: 0," in captured.err and "run    " not in captured.err
    report = dry_run_report(plan, work)
    actions = {line.split()[1] for line in report if "/" in line.split()[0]}
    assert actions == {"skip"} and "0.00 to run" in report[-1]


def test_a_changed_setting_reruns_that_stage_and_the_ones_after_it(smoke_run) -> None:
    plan, work, _ = smoke_run
    row = plan.row("textual-inversion")
    changed = dataclasses.replace(row, generate={**row.generate, "guidance": 5.0})
    edited = dataclasses.replace(plan, rows=tuple(changed if r.id == row.id else r for r in plan.rows))
    actions = {line.split()[0]: line.split()[1] for line in dry_run_report(edited, work) if "/" in line.split()[0]}
    assert actions["textual-inversion/train"] == "skip"
    assert [actions[f"textual-inversion/{s}"] for s in ("generate", "evaluate", "entry")] == ["run"] * 3
    assert {key: action for key, action in actions.items() if not key.startswith("textual-inversion/")} == {
        key: "skip" for key in actions if not key.startswith("textual-inversion/")
    }


def test_an_entry_made_under_other_settings_is_not_shown_as_regenerated(smoke_run) -> None:
    """A row whose settings changed shows no regenerated numbers until it is run again (never the stale entry)."""
    plan, work, _ = smoke_run
    row = plan.row("textual-inversion")
    changed = dataclasses.replace(row, generate={**row.generate, "guidance": 5.0})
    edited = dataclasses.replace(plan, rows=tuple(changed if r.id == row.id else r for r in plan.rows))
    current = {item.row.id: item for item in regenerate.comparison_rows(plan, work)}
    stale = {item.row.id: item for item in regenerate.comparison_rows(edited, work)}
    assert all(value is not None for value in current["textual-inversion"].regenerated.values())
    assert all(value is None for value in stale["textual-inversion"].regenerated.values())
    assert stale["textual-inversion"].published == current["textual-inversion"].published
    assert stale["stable-diffusion"].regenerated == current["stable-diffusion"].regenerated


def test_a_crash_in_one_stage_leaves_no_marker_and_a_rerun_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import baselines.common

    plan = load_plan(PLANS / "smoke.toml")
    work = tmp_path / "work"
    real_png, calls = baselines.common.png_bytes, []

    def crash_after_two(pixels):  # the third image of the run fails: a half-written submission
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("injected crash")
        return real_png(pixels)

    monkeypatch.setattr(baselines.common, "png_bytes", crash_after_two)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_plan(plan, work, rows=["stable-diffusion"], show_progress=False, log=lambda line: None)
    stages = work / "stages" / "stable-diffusion"
    assert not (stages / "generate.json").exists() and (stages / "generate.started.json").is_file()
    written = _stamps(work, "rows/stable-diffusion/submission/**/*.png")
    assert len(written) == 2
    monkeypatch.setattr(baselines.common, "png_bytes", real_png)
    lines: list[str] = []
    summary = run_plan(plan, work, rows=["stable-diffusion"], show_progress=False, log=lines.append)
    assert summary.ran == ("stable-diffusion/generate", "stable-diffusion/evaluate", "stable-diffusion/entry")
    assert any(line.startswith("resume stable-diffusion/generate") for line in lines)
    assert not (stages / "generate.started.json").exists() and (stages / "entry.json").is_file()
    finished = _stamps(work, "rows/stable-diffusion/submission/**/*.png")
    assert len(finished) == 16 and all(finished[path] == stamp for path, stamp in written.items())
    assert validate_submission(work / "rows" / "stable-diffusion" / "submission", per_emotion=2,
                               show_progress=False).valid  # fmt: skip
    markdown = (work / "tables" / "smoke-smoke.md").read_text()
    assert "| textual-inversion | Textual Inversion [SMOKE] | — / 50.51 |" in markdown  # not run: no value


def test_every_weight_the_stages_load_is_checked_before_anything_runs(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "supplement.toml")
    work = tmp_path / "work"
    report = "\n".join(dry_run_report(plan, work))
    for weight in ("sd-1.5", "inception-fid", "resnet50-places365", "hf:Salesforce/blip2-opt-2.7b"):
        assert f"missing weight (needed before a real run): {weight}" in report, weight
    (tmp_path / "emoset").mkdir()  # the data is here: only the weights stop the real run
    (tmp_path / "index").mkdir()
    (tmp_path / "reference.npz").write_bytes(b"statistics")
    plan = with_data_paths(
        plan, str(tmp_path / "emoset"), str(tmp_path / "index"), str(tmp_path / "reference.npz")
    )
    with pytest.raises(WeightsError) as caught:
        run_plan(plan, work, show_progress=False, log=lambda line: None)
    message = str(caught.value)
    assert "nothing was run" in message and "emogen-bench weights fetch resnet50-places365" in message
    assert "sd-caption-finetune/train" in message and "hf:Salesforce/blip2-opt-2.7b" in message
    assert not work.exists()  # no stage ran, not even the work folder was made
    assert caught.value.exit_code == ExitCode.WEIGHTS
