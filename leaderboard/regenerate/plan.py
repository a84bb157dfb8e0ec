"""A plan file (TOML, ``leaderboard/plans/*.toml``, docs/tables.md): rows, settings, resources, checked as read."""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.safe_read import file_kind, read_toml
from emogen_bench.task import SUBMISSION
from leaderboard.entries import SLUG
from leaderboard.resources import find_plan, plan_names

EMOGEN = "emogen"
#: ``sd.model`` of a tiny plan: :func:`reference.sd.tiny_sd_components`.
TINY_SD = "tiny"
#: ``emoset`` and ``index`` of a tiny plan: the synthetic EmoSet of :mod:`emogen_bench.demo`.
SYNTHETIC = "synthetic"
#: ``reference`` of a tiny plan: statistics of the synthetic EmoSet from the tiny Inception.
SMOKE_REFERENCE = "smoke-reference"
#: ``emogen.encoder|space|confidence`` of a tiny plan: trained at toy size in the ``emogen-inputs`` stage.
TRAIN_TINY = "train"
OFFICIAL = "official"
#: Owner of the stages shared by the whole plan (row ids are slugs, so never this).
PLAN_OWNER = "_plan"
ROW_STAGES: tuple[str, ...] = ("train", "generate", "evaluate", "entry")
#: The stages whose work is spread over the processes of a multi-process attempt; the others run in one.
MULTI_PROCESS_STAGES = ("train", "generate", "evaluate")
#: GPUs a stage of a full-size plan asks for unless its ``[resources]`` say otherwise (a tiny plan: none).
DEFAULT_GPUS = {"train": 1, "generate": 1, "evaluate": 1}
MARKER_FORMAT = "emogen-bench/plan-stage"
WORKDIR_FORMAT = "emogen-bench/tables-workdir"
FORMAT_VERSION = 1
SMOKE_BANNER = (
    "SMOKE RUN: tiny random models on synthetic images; the regenerated numbers mean nothing and are not "
    "comparable with the published ones"
)
#: The released inference saved ``.jpg`` files with Pillow's defaults (quality 75); see docs/tables.md.
RELEASED_JPEG_QUALITY = 75
#: Each baseline's settings dataclasses (``module:Class``) for ``train`` (None: it does not train) and
#: ``generate``: a row's settings are checked with them when the plan is read, as the baseline will read them.
BASELINE_SETTINGS: dict[str, tuple[str | None, str]] = {
    "sd": (None, "baselines.sd_prompt:SDPromptSettings"),
    "textual-inversion": (
        "baselines.textual_inversion:TextualInversionSettings",
        "baselines.textual_inversion:TextualInversionGenerateSettings",
    ),
    "dreambooth": ("baselines.dreambooth:DreamBoothSettings", "baselines.dreambooth:GenerateSettings"),
    "caption-sd": ("baselines.caption_sd:CaptionSDSettings", "baselines.caption_sd:GenerateSettings"),
}


@dataclass(frozen=True)
class PlanRow:
    """One row: ``method`` is a baseline name or ``emogen``; ``cost`` is GPU hours per stage (estimates)."""

    id: str
    label: str
    method: str
    tables: tuple[str, ...]
    train: Mapping[str, Any]
    generate: Mapping[str, Any]
    published: str | None
    cost: Mapping[str, float]
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _read_resources(reader: _Reader) -> dict[str, Any]:
    """A ``[resources]`` table: partition/account/time/mem text, cpus an integer, gpus a table stage -> count."""
    reader.refuse_unknown(_RESOURCE_KEYS)
    resources: dict[str, Any] = {}
    for key in ("partition", "account", "time", "mem"):
        if key in reader.table:
            resources[key] = reader.get(key, str)
    if "cpus" in reader.table:
        resources["cpus"] = _count(reader, "cpus")
    if "gpus" in reader.table:
        gpus = reader.table_at("gpus")
        gpus.refuse_unknown(("data", "emogen-inputs", *ROW_STAGES))
        resources["gpus"] = {stage: _count(gpus, stage) for stage in gpus.table}
    return resources


@dataclass(frozen=True)
class EvaluateSettings:
    """How rows are scored: ``jpeg_quality`` > 0 scores a JPEG copy (the released code read only ``*jpg``);
    ``pairs``: random pairs per emotion of the paper-code LPIPS and Sem-D (10 in the released code)."""

    jpeg_quality: int = 0
    pairs: int = 10
    device: str = "auto"
    batch_size: int = 32
    num_workers: int = 2


@dataclass(frozen=True)
class Plan:
    """A validated plan file; relative data paths are resolved against the work folder, ``published`` against
    the plan file's folder."""

    path: Path
    name: str
    title: str
    protocol: str
    per_emotion: int
    seed: int
    tiny: bool
    emoset: str
    index: str
    reference: str
    published: Path | None
    sd: Mapping[str, Any]
    evaluate: EvaluateSettings
    emogen: Mapping[str, Any]
    costs: Mapping[str, float]
    tables: Mapping[str, str]
    rows: tuple[PlanRow, ...]
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def row(self, row_id: str) -> PlanRow:
        return next(row for row in self.rows if row.id == row_id)


def _method_names() -> tuple[str, ...]:
    from baselines.common import BASELINES

    return (*BASELINES, EMOGEN)


def _trains(method: str) -> bool:
    """Whether the method has a training stage (every method but the prompt-only Stable Diffusion baseline)."""
    if method == EMOGEN:
        return True
    from baselines.common import get_baseline

    return bool(get_baseline(method).trains)


class _Reader:
    """Typed access to one TOML table; every error names the file and the key."""

    def __init__(self, path: Path, table: Mapping[str, Any], where: str) -> None:
        self.path, self.table, self.where = path, table, where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.path}: {self._name(key)}: {message}; fix the plan (docs/tables.md)")

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, f"required ({what or _kind_names(kinds)})")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.fail(key, f"expected {what or _kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {what or _kind_names(kinds)}, got {value!r}")
        return value

    def table_at(self, key: str) -> _Reader:
        value = self.get(key, dict, {}, "a table")
        return _Reader(self.path, value, self._name(key))

    def refuse_unknown(self, known: Sequence[str]) -> None:
        unknown = sorted(set(self.table) - set(known))
        if unknown:
            where = f"{self.where}: " if self.where else ""
            raise UsageError(
                f"{self.path}: {where}unknown key(s) {', '.join(unknown)}; the keys are: {', '.join(known)}"
            )


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "true or false", dict: "a table", list: "a list"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


_PLAN_KEYS = (
    "name", "title", "protocol", "per_emotion", "seed", "tiny", "emoset", "index", "reference", "published", "sd",
    "evaluate", "emogen", "costs", "tables", "rows", "resources",
)  # fmt: skip
_ROW_KEYS = ("id", "label", "method", "tables", "train", "generate", "published", "cost", "resources")
#: What a Slurm job of a stage asks for (``[resources]`` of a plan, ``resources`` of a row); ``gpus`` per stage name.
_RESOURCE_KEYS = ("partition", "account", "time", "mem", "cpus", "gpus")
_EMOGEN_KEYS = ("encoder", "space", "confidence", "prep")
_PREP_KEYS = ("stage1_steps", "stage1_batch", "encoder_size", "confidence_epochs")
_PLAN_COSTS = ("data", "emogen_inputs")
_PLAN_FIXED = ("per_emotion", "seed", "show_progress")


def _non_negative(reader: _Reader, key: str) -> float:
    """GPU hours: a finite number >= 0 (NaN and infinity are no estimate)."""
    value = reader.get(key, (int, float), what="GPU hours (a number >= 0)")
    if not math.isfinite(value) or value < 0:
        raise reader.fail(key, f"expected GPU hours, a finite number >= 0, got {value!r}")
    return float(value)


def _count(reader: _Reader, key: str, least: int = 0) -> int:
    """A whole number >= ``least`` (CPUs, GPUs, steps)."""
    value = reader.get(key, int, what=f"a whole number >= {least}")
    if value < least:
        raise reader.fail(key, f"expected a whole number >= {least}, got {value!r}")
    return value


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is, or holds, a NaN or an infinity (TOML writes them ``nan`` and ``inf``)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def _settings_class(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _fixed_settings(stage: str, seed: int, per_emotion: int) -> dict[str, Any]:
    """The settings the plan gives every row's ``stage`` (as ``work._row_settings`` does)."""
    fixed: dict[str, Any] = {"seed": seed, "show_progress": False}
    if stage == "generate":
        fixed["per_emotion"] = per_emotion
    return fixed


def baseline_settings_problem(
    method: str, stage: str, settings: Mapping[str, Any], *, seed: int, per_emotion: int
) -> str | None:
    """Why a baseline row's ``train`` or ``generate`` settings would be refused when the stage runs; None if they
    are good.  The check is the baseline's own: ``baselines.common.settings_from_mapping`` with its dataclass."""
    from baselines.common import settings_from_mapping

    train, generate = BASELINE_SETTINGS[method]
    target = train if stage == "train" else generate
    if target is None:
        return None if not settings else f"the {method} baseline does not train; remove the row's train settings"
    try:
        values = {**settings, **_fixed_settings(stage, seed, per_emotion)}
        settings_from_mapping(_settings_class(target), values, method)
    except (UsageError, TypeError, ValueError) as error:
        return str(error)
    return None


def emogen_settings_problem(
    stage: str, settings: Mapping[str, Any], *, seed: int, per_emotion: int, tiny: bool
) -> str | None:
    """Why an ``emogen`` row's settings would be refused when the stage runs; None if they are good.

    The stage builds ``Stage2Config.from_dict`` (train) or ``GenerateConfig`` (generate) from the values as
    they are, without converting them, so each value must already have its field's type; that is checked
    with ``settings_from_mapping``, then the config is built exactly as the stage builds it.
    """
    from baselines.common import settings_from_mapping
    from reference.generate import METHOD, GenerateConfig
    from reference.train import Stage2Config

    cls = Stage2Config if stage == "train" else GenerateConfig
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in (*_PLAN_FIXED, "resume", "cpu", "method")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        return f"unknown emogen setting(s) {', '.join(unknown)}; the settings are: {', '.join(allowed)}"
    values = {**settings, **_fixed_settings(stage, seed, per_emotion)}
    try:
        typed = settings_from_mapping(cls, values, EMOGEN)
        for key, value in settings.items():
            expected = getattr(typed, key)
            if expected != (tuple(value) if isinstance(value, list) else value):
                kind = _kind_names(list if isinstance(expected, tuple) else type(expected))
                example = list(expected) if isinstance(expected, tuple) else expected
                return f"emogen setting {key}={value!r}: expected {kind} (e.g. {example!r}), got {value!r}"
        if stage == "train":
            Stage2Config.from_dict({**values, "cpu": tiny, "resume": False})
        else:
            GenerateConfig(**values, method=METHOD)
    except (UsageError, TypeError, ValueError) as error:
        return str(error)
    return None


def settings_problems(row: PlanRow, *, seed: int, per_emotion: int, tiny: bool) -> list[str]:
    """Every problem of a row's ``train`` and ``generate`` settings, each naming the stage (empty: all good)."""
    problems = []
    for stage, settings in (("train", row.train), ("generate", row.generate)):
        bad = sorted(key for key, value in settings.items() if _non_finite(value))
        if bad:
            problems.append(f"{stage}: {', '.join(bad)}: expected finite numbers, not nan or inf")
            continue
        if row.method == EMOGEN:
            problem = emogen_settings_problem(stage, settings, seed=seed, per_emotion=per_emotion, tiny=tiny)
        elif row.method in BASELINE_SETTINGS:
            problem = baseline_settings_problem(row.method, stage, settings, seed=seed, per_emotion=per_emotion)
        else:
            problem = None
        if problem is not None:
            problems.append(f"{stage}: {problem}")
    return problems


def _read_row(path: Path, raw: Any, number: int, tables: Mapping[str, str], methods: Sequence[str]) -> PlanRow:
    where = f"rows[{number}]"
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: {where}: expected a table ([[rows]]), got {raw!r}")
    reader = _Reader(path, raw, where)
    reader.refuse_unknown(_ROW_KEYS)
    row_id = reader.get("id", str, what="a slug such as 'dreambooth'")
    if not SLUG.fullmatch(row_id):
        raise reader.fail("id", f"{row_id!r} must be lower-case letters and digits joined by single hyphens")
    method = reader.get("method", str, what=f"one of {', '.join(methods)}")
    if method not in methods:
        raise reader.fail("method", f"unknown method {method!r}; the methods are: {', '.join(methods)}")
    in_tables = reader.get("tables", list, what="a list of table names")
    if not in_tables or any(not isinstance(name, str) or name not in tables for name in in_tables):
        raise reader.fail(
            "tables", f"expected a non-empty list of the plan's tables ({', '.join(tables)}), got {in_tables!r}"
        )
    settings = {}
    for key in ("train", "generate"):
        settings[key] = dict(reader.get(key, dict, {}, "a table of settings"))
        fixed = sorted(set(settings[key]) & set(_PLAN_FIXED))
        if fixed:
            raise reader.fail(key, f"{', '.join(fixed)} are set once for the whole plan (top level), not per row")
    published = reader.get("published", str, None, "an entry id '<protocol>/<slug>'")
    if published is not None and (published.count("/") != 1 or not SLUG.fullmatch(published.split("/")[1])):
        raise reader.fail("published", f"expected an entry id '<protocol>/<slug>', got {published!r}")
    cost_reader = reader.table_at("cost")
    stages = [stage for stage in ROW_STAGES if stage != "entry" and (stage != "train" or _trains(method))]
    cost_reader.refuse_unknown(stages)
    cost = {stage: _non_negative(cost_reader, stage) for stage in stages}
    resources = _read_resources(reader.table_at("resources")) if "resources" in raw else {}
    return PlanRow(row_id, reader.get("label", str), method, tuple(in_tables), settings["train"],
                   settings["generate"], published, cost, resources)  # fmt: skip


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan: a file, or the name of a plan shipped with the package (``smoke``:
    :func:`leaderboard.resources.find_plan`); a :class:`UsageError` names the file, the key and the fix.

    Each row's settings are checked as its method will read them (:func:`settings_problems`), and every
    problem of every row is listed in one error, so a plan that would fail hours into a run fails here.
    """
    path = find_plan(path)
    kind = file_kind(path)
    if kind == "missing":
        raise UsageError(
            f"plan {path} does not exist; pass a plan file or the name of a plan shipped with emogen-bench "
            f"({', '.join(plan_names())}), e.g. smoke"
        )
    document = read_toml(path, "plan", UsageError)
    top = _Reader(path, document, "")
    top.refuse_unknown(_PLAN_KEYS)
    name = top.get("name", str)
    if not SLUG.fullmatch(name):
        raise top.fail("name", f"{name!r} must be lower-case letters and digits joined by single hyphens")
    protocol = top.get("protocol", str, what=f"one of {', '.join(PROTOCOLS)}")
    if protocol not in PROTOCOLS:
        raise top.fail("protocol", f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    tiny = top.get("tiny", bool)
    per_emotion = top.get("per_emotion", int)
    official = SUBMISSION.images_per_emotion
    if not SUBMISSION.min_images_per_emotion <= per_emotion <= official:
        raise top.fail("per_emotion", f"expected {SUBMISSION.min_images_per_emotion} to {official}, got {per_emotion}")
    if not tiny and per_emotion != official:
        raise top.fail(
            "per_emotion",
            f"a full-size plan makes leaderboard entries, which need the official "
            f"{official} images per emotion (got {per_emotion}); use tiny = true for a "
            "smoke run",
        )
    seed = top.get("seed", int)
    if seed < 0:
        raise top.fail("seed", f"expected a non-negative integer, got {seed}")
    emoset, index, reference = (top.get(key, str) for key in ("emoset", "index", "reference"))
    sd = top.table_at("sd")
    sd.refuse_unknown(("model", "revision", "dtype"))
    sd_settings = {"model": sd.get("model", str), "revision": sd.get("revision", str, None),
                   "dtype": sd.get("dtype", str, "auto")}  # fmt: skip
    if sd_settings["dtype"] not in ("auto", "fp32", "fp16", "bf16"):
        raise sd.fail("dtype", f"expected auto, fp32, fp16 or bf16, got {sd_settings['dtype']!r}")
    if tiny:
        checks = (("emoset", emoset, SYNTHETIC), ("index", index, SYNTHETIC), ("reference", reference, SMOKE_REFERENCE))
        for key, value, expected in checks:
            if value != expected:
                raise top.fail(key, f"a tiny plan uses {expected!r} (built in the work folder), got {value!r}")
        if sd_settings["model"] != TINY_SD:
            model = sd_settings["model"]
            raise sd.fail("model", f"a tiny plan uses the tiny Stable Diffusion {TINY_SD!r}, got {model!r}")
    else:
        for key, value in (("emoset", emoset), ("index", index), ("reference", reference)):
            if value in (SYNTHETIC, SMOKE_REFERENCE) or sd_settings["model"] == TINY_SD:
                raise top.fail(
                    key if value in (SYNTHETIC, SMOKE_REFERENCE) else "sd.model",
                    "synthetic data, smoke statistics and the tiny model belong to tiny = true plans",
                )
    evaluate_reader = top.table_at("evaluate")
    evaluate_reader.refuse_unknown([f.name for f in dataclasses.fields(EvaluateSettings)])
    evaluate = EvaluateSettings(
        jpeg_quality=evaluate_reader.get("jpeg_quality", int, 0),
        pairs=evaluate_reader.get("pairs", int, 10),
        device=evaluate_reader.get("device", str, "auto"),
        batch_size=evaluate_reader.get("batch_size", int, 32),
        num_workers=evaluate_reader.get("num_workers", int, 2),
    )
    if evaluate.pairs < 1:
        raise evaluate_reader.fail("pairs", f"expected at least 1 pair per emotion, got {evaluate.pairs}")
    if evaluate.batch_size < 1 or evaluate.num_workers < 0:
        key = "batch_size" if evaluate.batch_size < 1 else "num_workers"
        raise evaluate_reader.fail(key, f"expected batch_size >= 1 and num_workers >= 0, got {getattr(evaluate, key)}")
    if not 0 <= evaluate.jpeg_quality <= 100:
        raise evaluate_reader.fail("jpeg_quality", f"expected 0 (no JPEG copy) to 100, got {evaluate.jpeg_quality}")
    emogen_reader = top.table_at("emogen")
    emogen_reader.refuse_unknown(_EMOGEN_KEYS)
    emogen: dict[str, Any] = {}
    for key in ("encoder", "space", "confidence"):
        value = emogen_reader.get(key, str, TRAIN_TINY if tiny else OFFICIAL)
        if tiny and value != TRAIN_TINY:
            raise emogen_reader.fail(key, f"a tiny plan trains its own at toy size: use {TRAIN_TINY!r}, got {value!r}")
        if not tiny and value == TRAIN_TINY:
            raise emogen_reader.fail(
                key,
                "a full-size plan takes 'official' or a file written by `emogen-bench "
                f"reference stage1|space|confidence`, got {value!r}",
            )
        emogen[key] = value
    prep = emogen_reader.table_at("prep")
    prep.refuse_unknown(_PREP_KEYS)
    emogen["prep"] = {key: _count(prep, key, 1) for key in _PREP_KEYS if key in prep.table}
    costs_reader = top.table_at("costs")
    costs_reader.refuse_unknown(_PLAN_COSTS)
    costs = {key: _non_negative(costs_reader, key) if key in costs_reader.table else 0.0 for key in _PLAN_COSTS}
    tables_reader = top.table_at("tables")
    tables = {}
    for table_name in tables_reader.table:
        if not SLUG.fullmatch(table_name):
            raise tables_reader.fail(table_name, "table names are lower-case letters and digits joined by hyphens")
        tables[table_name] = tables_reader.table_at(table_name).get("title", str)
    if not tables:
        raise top.fail("tables", "required: at least one [tables.<name>] with a title")
    raw_rows = top.get("rows", list, what="[[rows]] tables")
    methods = _method_names()
    rows = tuple(_read_row(path, raw, number, tables, methods) for number, raw in enumerate(raw_rows))
    if not rows:
        raise top.fail("rows", "the plan has no rows")
    ids = [row.id for row in rows]
    repeated = sorted({row_id for row_id in ids if ids.count(row_id) > 1})
    if repeated:
        raise top.fail("rows", f"row id(s) {', '.join(repeated)} used more than once")
    problems = [f"rows[{number}] (id {row.id!r}) {problem}" for number, row in enumerate(rows)
                for problem in settings_problems(row, seed=seed, per_emotion=per_emotion, tiny=tiny)]  # fmt: skip
    if problems:
        raise UsageError(
            f"{path}: {len(problems)} problem(s) in the rows' settings, checked as each method will read them "
            "(nothing was run):\n" + "\n".join(f"  - {problem}" for problem in problems)
            + "\nFix the plan (docs/tables.md; each method's settings are in docs/baselines.md and docs/reference.md)"
        )
    published = top.get("published", str, None, "a folder of entries, relative to the plan file")
    return Plan(
        path=path, name=name, title=top.get("title", str), protocol=protocol, per_emotion=per_emotion, seed=seed,
        tiny=tiny, emoset=emoset, index=index, reference=reference,
        published=(path.parent / published) if published is not None else None, sd=sd_settings, evaluate=evaluate,
        emogen=emogen, costs=costs, tables=tables, rows=rows,
        resources=_read_resources(top.table_at("resources")) if "resources" in document else {},
    )  # fmt: skip


def select_rows(plan: Plan, ids: Sequence[str] | None) -> tuple[PlanRow, ...]:
    """The rows named by ``--rows`` (all when ``None``), in plan order; an unknown id is a UsageError."""
    if not ids:
        return plan.rows
    known = [row.id for row in plan.rows]
    unknown = [row_id for row_id in ids if row_id not in known]
    if unknown:
        raise UsageError(f"--rows: unknown row id(s) {', '.join(unknown)}; the plan's rows: {', '.join(known)}")
    return tuple(row for row in plan.rows if row.id in ids)


def resolve_path(workdir: Path, value: str) -> Path:
    """A plan path: absolute as it is, relative to the work folder otherwise."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else workdir / path


def with_data_paths(plan: Plan, emoset: str | None, index: str | None, reference: str | None) -> Plan:
    """The plan with its data paths overridden (absolute paths, so they do not depend on the work folder)."""
    if plan.tiny and (emoset or index or reference):
        raise UsageError("--emoset, --index and --reference-stats apply to full-size plans; a tiny plan makes its own")
    changes = {key: str(Path(value).resolve()) for key, value in
               (("emoset", emoset), ("index", index), ("reference", reference)) if value}  # fmt: skip
    return dataclasses.replace(plan, **changes)
