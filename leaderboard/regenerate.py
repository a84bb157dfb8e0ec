"""``emogen-bench tables regenerate PLAN``: run a table's rows end to end and set them beside the published numbers.

A plan file (TOML, ``leaderboard/plans/*.toml``, described in docs/tables.md) lists the rows of one
or more tables: for each row a method (a baseline name or ``emogen``), its training and generation
settings, the published entry it is compared with and the GPU hours each stage is expected to take.
:func:`run_plan` takes every row through ``train -> generate -> evaluate -> entry`` inside a work
folder, then renders the regenerated tables beside the published ones (Markdown and CSV).

Each stage is skipped when already complete: after it succeeds, ``stages/<row>/<stage>.json``
records a digest of everything that decides its outputs (its settings, the plan's settings, and the
run id of each stage it reads from), written atomically. A changed input changes the digest, so the
stage runs again, and with it every stage after it (their digests name its new run id). A stage
that crashed leaves ``<stage>.started.json`` and no marker: the next run resumes it where the
stage's own code resumes safely (generation keeps the complete images of the same run, training
continues from its latest complete checkpoint) and restarts it from an empty folder otherwise, so
partial output is never taken for a result.

Plans with ``tiny = true`` (``smoke.toml``) use tiny models built in code, a synthetic EmoSet and
smoke reference statistics (as ``emogen-bench demo`` does); their results and entries are labelled
SMOKE everywhere, are written only under the work folder, and can never join the leaderboard.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emogen_bench import __version__
from emogen_bench.errors import ExitCode, UsageError, WeightsError
from emogen_bench.fileio import write_atomic, write_json_atomic
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.report import format_value
from emogen_bench.results import LOWER_IS_BETTER, METRIC_LABELS
from emogen_bench.task import EMOTION_NAMES, SUBMISSION
from leaderboard.entries import SLUG, Entry, check_entry, entry_path

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
MARKER_FORMAT = "emogen-bench/plan-stage"
WORKDIR_FORMAT = "emogen-bench/tables-workdir"
FORMAT_VERSION = 1
SMOKE_BANNER = (
    "SMOKE RUN: tiny random models on synthetic images; the regenerated numbers mean nothing and are not "
    "comparable with the published ones"
)
#: The released inference saved ``.jpg`` files with Pillow's defaults (quality 75); see docs/tables.md.
RELEASED_JPEG_QUALITY = 75


# ---- the plan ------------------------------------------------------------------------------------------------


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
        resources["cpus"] = int(_non_negative(reader, "cpus"))
    if "gpus" in reader.table:
        gpus = reader.table_at("gpus")
        gpus.refuse_unknown(("data", "emogen-inputs", *ROW_STAGES))
        resources["gpus"] = {stage: int(_non_negative(gpus, stage)) for stage in gpus.table}
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
    value = reader.get(key, (int, float), what="GPU hours (a number >= 0)")
    if value < 0:
        raise reader.fail(key, f"expected GPU hours >= 0, got {value!r}")
    return float(value)


def _check_emogen_settings(reader: _Reader, key: str, settings: Mapping[str, Any]) -> None:
    from reference.generate import GenerateConfig
    from reference.train import Stage2Config

    cls = Stage2Config if key == "train" else GenerateConfig
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in (*_PLAN_FIXED, "resume", "cpu", "method")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        names = ", ".join(allowed)
        raise reader.fail(key, f"unknown emogen setting(s) {', '.join(unknown)}; the settings are: {names}")


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
    if not in_tables or any(name not in tables for name in in_tables):
        raise reader.fail(
            "tables", f"expected a non-empty list of the plan's tables ({', '.join(tables)}), got {in_tables!r}"
        )
    settings = {}
    for key in ("train", "generate"):
        settings[key] = dict(reader.get(key, dict, {}, "a table of settings"))
        fixed = sorted(set(settings[key]) & set(_PLAN_FIXED))
        if fixed:
            raise reader.fail(key, f"{', '.join(fixed)} are set once for the whole plan (top level), not per row")
        if method == EMOGEN:
            _check_emogen_settings(reader, key, settings[key])
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
    """Read and validate a plan file; a :class:`UsageError` names the file, the key and the fix."""
    from emogen_bench.weights.registry import read_toml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"plan {path} does not exist; the plans are in leaderboard/plans/")
    document = read_toml(path, "plan")
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
    emogen["prep"] = {key: prep.get(key, int) for key in _PREP_KEYS if key in prep.table}
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


# ---- stages, digests and markers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One unit of work: ``owner`` is a row id or ``_plan``; ``upstream`` the stages whose outputs it reads."""

    owner: str
    name: str
    inputs: Mapping[str, Any]
    upstream: tuple[tuple[str, str], ...]
    cost: float

    @property
    def key(self) -> str:
        return f"{self.owner}/{self.name}"


def digest_of(document: Any) -> str:
    """``sha256:<hex>`` of a JSON document in canonical form (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def stage_digest(stage: Stage, upstream_run_ids: Mapping[str, str]) -> str:
    """The digest a stage's marker must carry: its inputs, the run ids it reads from, the benchmark version."""
    return digest_of({"stage": stage.key, "inputs": stage.inputs, "upstream": dict(upstream_run_ids),
                      "benchmark_version": __version__})  # fmt: skip


def _data_identity(plan: Plan, workdir: Path) -> dict[str, Any]:
    """What identifies a full-size plan's EmoSet index and reference statistics (the index and stats hashed)."""
    from emogen_bench.hashing import sha256_file

    identity: dict[str, Any] = {}
    index = resolve_path(workdir, plan.index) / "index.csv"
    reference = resolve_path(workdir, plan.reference)
    identity["index"] = "sha256:" + sha256_file(index) if index.is_file() else f"missing: {index}"
    identity["reference"] = "sha256:" + sha256_file(reference) if reference.is_file() else f"missing: {reference}"
    identity["emoset"] = str(resolve_path(workdir, plan.emoset))
    return identity


def resolve_path(workdir: Path, value: str) -> Path:
    """A plan path: absolute as it is, relative to the work folder otherwise."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else workdir / path


def plan_stages(plan: Plan, rows: Sequence[PlanRow], workdir: Path) -> list[Stage]:
    """Every stage of ``rows`` in the order they run: the shared stages first, then row by row."""
    stages: list[Stage] = []
    data_up: tuple[tuple[str, str], ...] = ()
    base = {"plan_seed": plan.seed, "per_emotion": plan.per_emotion, "sd": dict(plan.sd), "tiny": plan.tiny}
    if plan.tiny:
        stages.append(Stage(PLAN_OWNER, "data", {"synthetic_seed": plan.seed + 1, "protocol": plan.protocol},
                            (), plan.costs["data"]))  # fmt: skip
        data_up = ((PLAN_OWNER, "data"),)
        data: dict[str, Any] = {}
    else:
        data = _data_identity(plan, workdir)
    # Training reads the index and the images, never the reference statistics: only evaluate depends on those.
    training_data = {key: value for key, value in data.items() if key != "reference"}
    emogen_up: tuple[tuple[str, str], ...] = ()
    if any(row.method == EMOGEN for row in rows):
        inputs = {key: plan.emogen[key] for key in ("encoder", "space", "confidence")}
        inputs.update(prep=dict(plan.emogen["prep"]), seed=plan.seed, files=_emogen_files(plan, workdir),
                      data=training_data)
        stages.append(Stage(PLAN_OWNER, "emogen-inputs", inputs, data_up, plan.costs["emogen_inputs"]))
        emogen_up = ((PLAN_OWNER, "emogen-inputs"),)
    for row in rows:
        trains = "train" in row.cost
        common = {**base, "method": row.method}
        if trains:
            stages.append(
                Stage(
                    row.id,
                    "train",
                    {**common, "data": training_data, "settings": dict(row.train)},
                    data_up + (emogen_up if row.method == EMOGEN else ()),
                    row.cost["train"],
                )
            )
        generate_up = ((row.id, "train"),) if trains else data_up
        if row.method == EMOGEN:
            generate_up += emogen_up
        stages.append(Stage(row.id, "generate", {**common, "settings": dict(row.generate)},
                            generate_up, row.cost["generate"]))  # fmt: skip
        evaluate_inputs = {
            "protocol": plan.protocol,
            "per_emotion": plan.per_emotion,
            "seed": plan.seed,
            "jpeg_quality": plan.evaluate.jpeg_quality,
            "pairs": plan.evaluate.pairs,
            "data": data,
            "tiny": plan.tiny,
        }
        stages.append(Stage(row.id, "evaluate", evaluate_inputs, ((row.id, "generate"), *data_up),
                            row.cost["evaluate"]))  # fmt: skip
        stages.append(Stage(row.id, "entry", {"label": row.label, "slug": row.id, "tiny": plan.tiny},
                            ((row.id, "evaluate"),), 0.0))  # fmt: skip
    return stages


def _emogen_files(plan: Plan, workdir: Path) -> dict[str, str]:
    """Digests of the encoder, space and confidence files a full-size plan names (``official`` is pinned)."""
    from emogen_bench.hashing import sha256_file

    files = {}
    for key in ("encoder", "space", "confidence"):
        value = plan.emogen[key]
        if value not in (OFFICIAL, TRAIN_TINY):
            path = resolve_path(workdir, value)
            files[key] = "sha256:" + sha256_file(path) if path.is_file() else f"missing: {path}"
    return files


def marker_path(workdir: Path, owner: str, name: str) -> Path:
    return workdir / "stages" / owner / f"{name}.json"


def started_path(workdir: Path, owner: str, name: str) -> Path:
    return workdir / "stages" / owner / f"{name}.started.json"


def read_marker(workdir: Path, owner: str, name: str) -> dict[str, Any] | None:
    """A stage's completion marker, or ``None`` when there is none or it is unreadable (then the stage reruns)."""
    path = marker_path(workdir, owner, name)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("format") != MARKER_FORMAT:
        return None
    return document


def marker_complete(workdir: Path, marker: Mapping[str, Any] | None, digest: str | None) -> bool:
    """Whether ``marker`` records a finished stage with ``digest`` whose output paths all still exist."""
    if marker is None or digest is None or marker.get("digest") != digest:
        return False
    paths = marker.get("paths", {})
    return isinstance(paths, dict) and all((workdir / relative).exists() for relative in paths.values())


# ---- running one stage ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every stage runner needs: the plan, the work folder, the upstream outputs, how to report."""

    plan: Plan
    workdir: Path
    show_progress: bool
    log: Callable[[str], None]
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Tiny extractors of a tiny plan, built once per run (every row is scored with the same models).
    extractors: dict[str, Any] | None = None

    def path(self, relative: str) -> Path:
        return self.workdir / relative

    def output(self, owner: str, stage: str, key: str) -> Any:
        return self.upstream[f"{owner}/{stage}"][key]


@dataclass(frozen=True)
class StageOutcome:
    """What a runner returns: ``paths`` (relative to the work folder; all must exist for the stage to count as
    done) and ``values`` (anything else later stages read)."""

    paths: Mapping[str, str]
    values: Mapping[str, Any] = field(default_factory=dict)


def _relative(workdir: Path, path: Path) -> str:
    return str(Path(path).resolve().relative_to(workdir.resolve()))


def _fresh_dir(path: Path) -> Path:
    """An empty folder at ``path`` (whatever a crashed attempt left there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _sd_components(plan: Plan, *, training: bool) -> Any:
    """Fresh SD components for one stage (stages add tokens and train weights, so none are shared)."""
    import torch

    from reference.sd import load_sd_components, tiny_sd_components

    if plan.sd["model"] == TINY_SD:
        return tiny_sd_components(seed=plan.seed)
    cuda = torch.cuda.is_available()
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if training:  # on the CPU in fp32: the training loops move and cast them (accelerate, mixed precision)
        return load_sd_components(plan.sd["model"], plan.sd["revision"], dtype=torch.float32, device="cpu")
    dtype = dtypes.get(plan.sd["dtype"], torch.float16 if cuda else torch.float32)
    return load_sd_components(plan.sd["model"], plan.sd["revision"], dtype=dtype, device="cuda" if cuda else "cpu")


def _data_paths(ctx: Context) -> tuple[Path, Path]:
    """(EmoSet root, index folder) of the plan."""
    if ctx.plan.tiny:
        return Path(ctx.output(PLAN_OWNER, "data", "emoset")), Path(ctx.output(PLAN_OWNER, "data", "index"))
    return resolve_path(ctx.workdir, ctx.plan.emoset), resolve_path(ctx.workdir, ctx.plan.index)


def run_data_stage(ctx: Context, resume: bool) -> StageOutcome:
    """Tiny plans: the synthetic EmoSet, its index and smoke reference statistics (as ``emogen-bench demo``)."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.data import prepare_emoset
    from emogen_bench.demo import write_synthetic_emoset
    from emogen_bench.features import tiny_extractors
    from emogen_bench.reference_stats import build_reference_stats

    root = _fresh_dir(ctx.path("data"))
    emoset = write_synthetic_emoset(root / "emoset", seed=ctx.plan.seed + 1)
    prepare_emoset(emoset, root / "index", show_progress=ctx.show_progress)
    inception = tiny_extractors(["inception"], protocol=ctx.plan.protocol)["inception"]
    build_reference_stats(
        root / "index", emoset, root / "reference.npz", extractor=inception, cache=FeatureCache(root=ctx.path("cache")),
        num_workers=0, device="cpu", show_progress=ctx.show_progress, protocol=ctx.plan.protocol,
    )  # fmt: skip
    return StageOutcome({"emoset": "data/emoset", "index": "data/index", "reference": "data/reference.npz"})


def run_emogen_inputs_stage(ctx: Context, resume: bool) -> StageOutcome:
    """EmoGen's encoder, emotion space and confidence table: trained at toy size (tiny) or named files/official."""
    if not ctx.plan.tiny:
        values = {}
        for key in ("encoder", "space", "confidence"):
            value = ctx.plan.emogen[key]
            path = resolve_path(ctx.workdir, value)
            if value != OFFICIAL and not path.is_file():
                raise UsageError(
                    f"{ctx.plan.path}: emogen.{key}: {path} does not exist; give 'official' or the "
                    f"file written by `emogen-bench reference {key if key != 'encoder' else 'stage1'}`"
                )
            values[key] = value if value == OFFICIAL else str(path.resolve())
        return StageOutcome({}, values)
    from emogen_bench.data import load_index
    from emogen_bench.features import tiny_extractors
    from reference.cli import confidence_step, space_step
    from reference.confidence import clip_embeddings
    from reference.encoder import Stage1Config, load_encoder, train_stage1

    prep = {"stage1_steps": 2, "stage1_batch": 8, "encoder_size": 64, "confidence_epochs": 5, **ctx.plan.emogen["prep"]}
    emoset, index = _data_paths(ctx)
    root = _fresh_dir(ctx.path("emogen-inputs"))
    rows = load_index(index)
    stage1 = train_stage1(
        Stage1Config(
            epochs=1, steps_per_epoch=prep["stage1_steps"], batch_size=prep["stage1_batch"], trunk="tiny",
            pretrained=False, resize=prep["encoder_size"], crop=prep["encoder_size"], device="cpu", num_workers=0,
            eval_batch_size=16, seed=ctx.plan.seed, show_progress=ctx.show_progress,
        ),
        index, emoset, root / "stage1",
    )  # fmt: skip
    encoder = load_encoder(stage1.best_checkpoint)
    space_step(encoder, rows, emoset, root / "space", batch_size=16, source="tiny plan stage 1",
               show_progress=ctx.show_progress)  # fmt: skip
    clip = tiny_extractors(["clip"])["clip"]
    embeddings = clip_embeddings(rows, emoset, clip.vision_model, clip.pixel_settings, batch_size=16,
                                 show_progress=ctx.show_progress)  # fmt: skip
    confidence = confidence_step(embeddings, rows, root / "confidence", epochs=prep["confidence_epochs"],
                                 seed=ctx.plan.seed, show_progress=ctx.show_progress)  # fmt: skip
    paths = {
        "encoder": _relative(ctx.workdir, stage1.best_checkpoint),
        "space": "emogen-inputs/space/space.safetensors",
        "confidence": _relative(ctx.workdir, confidence["table"]),
    }
    return StageOutcome(paths)


def _row_settings(ctx: Context, row: PlanRow, stage: str) -> dict[str, Any]:
    """A row's settings for ``stage`` with the plan-wide ones filled in."""
    settings = dict(row.train if stage == "train" else row.generate)
    settings["seed"] = ctx.plan.seed
    settings["show_progress"] = ctx.show_progress
    if stage == "generate":
        settings["per_emotion"] = ctx.plan.per_emotion
    return settings


def run_train_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Train one row: a baseline's ``train``, or EmoGen's stage 2 on the plan's encoder, space and confidence."""
    out_dir = ctx.path(f"rows/{row.id}/train")
    if row.method == EMOGEN:
        checkpoint = _train_emogen(ctx, row, out_dir, resume)
    else:
        from baselines.common import get_baseline

        emoset, index = _data_paths(ctx)
        resume = resume and out_dir.is_dir() and any(out_dir.iterdir())
        if not resume:
            _fresh_dir(out_dir)
        checkpoint = get_baseline(row.method).train(
            _row_settings(ctx, row, "train"), index, emoset, out_dir,
            components=_sd_components(ctx.plan, training=True), resume=resume,
        )  # fmt: skip
    return StageOutcome({"checkpoint": _relative(ctx.workdir, checkpoint)})


def _train_emogen(ctx: Context, row: PlanRow, out_dir: Path, resume: bool) -> Path:
    from emogen_bench.data import load_index
    from reference.cli import load_encoder_arg, load_space_arg, vocabulary_from_rows
    from reference.confidence import load_confidence_table, official_confidence_table
    from reference.train import Stage2Config, checkpoint_dirs, train_stage2

    inputs = ctx.upstream[f"{PLAN_OWNER}/emogen-inputs"]
    resume = resume and out_dir.is_dir() and bool(checkpoint_dirs(out_dir))
    if not resume:
        _fresh_dir(out_dir)
    settings = _row_settings(ctx, row, "train")
    config = Stage2Config.from_dict({**settings, "cpu": ctx.plan.tiny, "resume": resume})
    space, space_source = load_space_arg(inputs["space"])
    table = (official_confidence_table() if inputs["confidence"] == OFFICIAL
             else load_confidence_table(inputs["confidence"]))  # fmt: skip
    encoder = load_encoder_arg(inputs["encoder"]) if config.mapper_input == "encoder" else None
    emoset, index = _data_paths(ctx)
    rows = load_index(index)
    result = train_stage2(
        config, _sd_components(ctx.plan, training=True), space, table, vocabulary_from_rows(rows, config.split), rows,
        emoset, out_dir, encoder=encoder, space_source=space_source,
    )  # fmt: skip
    return result.checkpoint


def run_generate_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Generate one row's submission; a resumed stage keeps the complete images its earlier attempt wrote."""
    out_dir = ctx.path(f"rows/{row.id}/submission")
    if not resume and out_dir.exists():
        shutil.rmtree(out_dir)
    checkpoint = ctx.upstream.get(f"{row.id}/train", {}).get("checkpoint")
    settings = _row_settings(ctx, row, "generate")
    if row.method == EMOGEN:
        import torch

        from reference.cli import load_space_arg
        from reference.generate import METHOD, GenerateConfig, generate_submission
        from reference.train import load_checkpoint

        mapper, _ = load_checkpoint(checkpoint)
        space, _ = load_space_arg(ctx.output(PLAN_OWNER, "emogen-inputs", "space"))
        components = _sd_components(ctx.plan, training=False)
        mapper = mapper.to(next(components.unet.parameters()).device)
        config = GenerateConfig(**settings, method=METHOD)
        with torch.no_grad():
            generate_submission(config, components, mapper, space, out_dir)
    else:
        from baselines.common import get_baseline

        get_baseline(row.method).generate(
            settings, Path(checkpoint) if checkpoint else None, out_dir,
            components=_sd_components(ctx.plan, training=False),
        )  # fmt: skip
    return StageOutcome({"submission": _relative(ctx.workdir, out_dir)})


def jpeg_copy(source: Path, dest: Path, quality: int) -> Path:
    """A copy of the submission ``source`` with every image re-encoded as ``<stem>.jpg`` at ``quality``.

    The released EmoGen inference saved ``.jpg`` files with Pillow's defaults, and the released metric
    scripts read only ``*jpg`` files; under ``emogen-paper-code`` a PNG submission gets no LPIPS or Sem-D.
    Resumable: complete JPEG files already in ``dest`` are kept. ``submission.json`` names the new files
    and says what was done.
    """
    from PIL import Image

    from emogen_bench.fileio import atomic_writer
    from emogen_bench.submission import read_metadata, write_metadata

    metadata = read_metadata(source / SUBMISSION.metadata_file)
    renamed: dict[str, str] = {}
    for emotion in EMOTION_NAMES:
        (dest / emotion).mkdir(parents=True, exist_ok=True)
        for image in sorted((source / emotion).iterdir()):
            if image.name.startswith(".") or not image.is_file():
                continue
            relative = f"{emotion}/{image.stem}.jpg"
            renamed[f"{emotion}/{image.name}"] = relative
            target = dest / relative
            if target.exists() and _complete_jpeg(target):
                continue
            with Image.open(image) as handle, atomic_writer(target, overwrite=True) as out:
                handle.convert("RGB").save(out, format="JPEG", quality=quality)
    seeds = {renamed.get(path, path): seed for path, seed in (metadata.seeds or {}).items()}
    note = f"JPEG copy (quality {quality}) of {source.name}, as the released EmoGen inference saved its images"
    notes = f"{metadata.notes}; {note}" if metadata.notes else note
    write_metadata(dest, dataclasses.replace(metadata, seeds=seeds or None, notes=notes), overwrite=True)
    return dest


def _complete_jpeg(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.format == "JPEG"
    except (OSError, ValueError):
        return False


def run_evaluate_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Score one row's submission with ``emogen_bench.evaluate`` (tiny extractors and smoke statistics if tiny)."""
    from emogen_bench.cache import FeatureCache
    from emogen_bench.config import EvalConfig
    from emogen_bench.evaluate import evaluate
    from emogen_bench.features import tiny_extractors
    from emogen_bench.reference_stats import load_reference_stats

    plan = ctx.plan
    row_dir = ctx.path(f"rows/{row.id}")
    submission = Path(ctx.output(row.id, "generate", "submission"))
    if plan.evaluate.jpeg_quality:
        jpeg_dir = row_dir / "submission-jpg"
        if not resume and jpeg_dir.exists():
            shutil.rmtree(jpeg_dir)
        submission = jpeg_copy(submission, jpeg_dir, plan.evaluate.jpeg_quality)
    official = plan.per_emotion == SUBMISSION.images_per_emotion
    config = EvalConfig(
        per_emotion=None if official else plan.per_emotion, protocol=plan.protocol, seed=plan.seed,
        pairs=plan.evaluate.pairs, device="cpu" if plan.tiny else plan.evaluate.device,
        batch_size=plan.evaluate.batch_size, num_workers=0 if plan.tiny else plan.evaluate.num_workers,
        show_progress=ctx.show_progress,
    )  # fmt: skip
    if plan.tiny:
        reference_path = Path(ctx.output(PLAN_OWNER, "data", "reference"))
        if ctx.extractors is None:
            ctx.extractors = tiny_extractors(protocol=plan.protocol)
        extractors = ctx.extractors
    else:
        reference_path = resolve_path(ctx.workdir, plan.reference)
        extractors = None
    result = evaluate(submission, config, extractors=extractors, reference=load_reference_stats(reference_path),
                      cache=FeatureCache(root=ctx.path("cache")))  # fmt: skip
    path = result.write(row_dir / "results.json", overwrite=True)
    return StageOutcome({"results": _relative(ctx.workdir, path)}, {"smoke": result.smoke})


def run_entry_stage(ctx: Context, row: PlanRow, resume: bool) -> StageOutcome:
    """Turn one row's results into an entry under ``<workdir>/entries`` (never ``leaderboard/entries``)."""
    from emogen_bench.results import read_results
    from leaderboard.entries import entry_from_results, smoke_entry_from_results, store_entry

    results_path = Path(ctx.output(row.id, "evaluate", "results"))
    results = read_results(results_path)
    notes = f"regenerated by `emogen-bench tables regenerate` (plan {ctx.plan.name}, row {row.id})"
    if results.get("smoke"):
        entry = smoke_entry_from_results(results, method=f"{row.label} [SMOKE]", slug=row.id, notes=notes,
                                         source=results_path)  # fmt: skip
    else:
        entry = entry_from_results(results, method=f"{row.label} (regenerated)", slug=row.id, notes=notes,
                                   source=results_path)  # fmt: skip
    outcome = store_entry(entry, ctx.path("entries"), replace=True)
    return StageOutcome({"entry": _relative(ctx.workdir, outcome.path)})


def _execute(ctx: Context, stage: Stage, resume: bool) -> StageOutcome:
    """Dispatch to the stage's runner (looked up at call time, so tests can replace one)."""
    if stage.owner == PLAN_OWNER:
        runner = {"data": run_data_stage, "emogen-inputs": run_emogen_inputs_stage}[stage.name]
        return runner(ctx, resume)
    row = ctx.plan.row(stage.owner)
    runners = {"train": run_train_stage, "generate": run_generate_stage, "evaluate": run_evaluate_stage,
               "entry": run_entry_stage}  # fmt: skip
    return runners[stage.name](ctx, row, resume)


# ---- the run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageStatus:
    """A stage as the dry run or the run reports it: ``action`` is ``skip``, ``run`` or ``resume``."""

    stage: Stage
    action: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_plan` did: the stages run and skipped, the table files and the Markdown."""

    statuses: tuple[StageStatus, ...]
    ran: tuple[str, ...]
    markdown: str
    outputs: Mapping[str, Path]

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(s.stage.key for s in self.statuses if s.action == "skip")


def _status(workdir: Path, stage: Stage, run_ids: Mapping[str, str | None]) -> tuple[StageStatus, str | None]:
    """Whether ``stage`` is complete given the run ids of its upstream stages (``None``: will run first)."""
    upstream = {f"{o}/{n}": run_ids.get(f"{o}/{n}") for o, n in stage.upstream}
    pending = [key for key, run_id in upstream.items() if run_id is None]
    if pending:
        return StageStatus(stage, "run", f"after {', '.join(pending)}"), None
    digest = stage_digest(stage, upstream)  # type: ignore[arg-type]
    marker = read_marker(workdir, stage.owner, stage.name)
    if marker_complete(workdir, marker, digest):
        return StageStatus(stage, "skip", "complete"), digest
    started = _read_json(started_path(workdir, stage.owner, stage.name))
    if started is not None and started.get("digest") == digest:
        return StageStatus(stage, "resume", "an earlier attempt did not finish"), digest
    if marker is not None:
        return StageStatus(
            stage, "run", "inputs changed" if marker.get("digest") != digest else "outputs missing"
        ), digest
    return StageStatus(stage, "run", "not run yet"), digest


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _check_workdir(workdir: Path, tiny: bool) -> None:
    """Refuse a folder that is neither new, empty, nor a work folder of this command (its files are not ours),
    and a work folder of full-size plans for a tiny one or the reverse (rows share their folders by id)."""
    if not workdir.exists():
        return
    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file; give a new folder or an earlier work folder")
    marker = _read_json(workdir / "regenerate.json")
    if any(workdir.iterdir()) and (marker is None or marker.get("format") != WORKDIR_FORMAT):
        raise UsageError(
            f"--workdir {workdir} holds files and no regenerate.json, so it is not a work folder of "
            "`emogen-bench tables regenerate`; give a new or empty folder (nothing was written)"
        )
    if marker is not None and marker.get("tiny", tiny) != tiny:
        kinds = ("full-size", "tiny (smoke)") if tiny else ("tiny (smoke)", "full-size")
        raise UsageError(
            f"--workdir {workdir} holds {kinds[0]} plan runs and this plan is {kinds[1]}; rows share their folders "
            "by id, so use another work folder (nothing was written)"
        )


def missing_data(plan: Plan, workdir: Path) -> list[str]:
    """The full-size plan's EmoSet, index and reference statistics that are not where the plan says."""
    if plan.tiny:
        return []
    checks = [
        ("emoset", plan.emoset, "the EmoSet folder"),
        ("index", plan.index, "`emogen-bench data prepare` --out"),
        ("reference", plan.reference, "`emogen-bench reference-stats build` output"),
    ]
    return [f"{key} = {resolve_path(workdir, value)} ({what})" for key, value, what in checks
            if not resolve_path(workdir, value).exists()]  # fmt: skip


def _check_data(plan: Plan, workdir: Path) -> None:
    """A full-size plan's data must exist before anything runs."""
    missing = missing_data(plan, workdir)
    if missing:
        raise UsageError(
            f"{plan.path}: missing data: {'; '.join(missing)}. Paths are relative to --workdir: put (or link) them "
            "there, or pass --emoset, --index and --reference-stats"
        )


#: The registry artifacts of EmoGen's inputs when the plan takes the released ones (``official``).
OFFICIAL_EMOGEN_ARTIFACTS = {"encoder": "emo-resnet50-emoset", "space": "emo-space", "confidence": "attr-coefficients"}


def needed_weights(plan: Plan, rows: Sequence[PlanRow], workdir: Path) -> dict[str, list[str]]:
    """Every weight the stages of ``rows`` will load -> the stages that load it (nothing for a tiny plan).

    Registry artifacts by id; Hugging Face models that are not in the registry (a non-default SD
    model, BLIP-2 for caption-SD) as ``hf:<repo>@<revision>`` or the local folder given.
    """
    from emogen_bench.features import ARTIFACTS_BY_EXTRACTOR, metric_extractors
    from emogen_bench.protocols import get_protocol
    from reference.sd import DEFAULT_SD_MODEL

    if plan.tiny:
        return {}
    needed: dict[str, list[str]] = {}

    def need(weight: str, stage: str) -> None:
        needed.setdefault(weight, []).append(stage)

    sd = "sd-1.5" if plan.sd["model"] == DEFAULT_SD_MODEL else f"hf:{plan.sd['model']}@{plan.sd.get('revision')}"
    if any(row.method == EMOGEN for row in rows):
        for key, artifact in OFFICIAL_EMOGEN_ARTIFACTS.items():
            if plan.emogen[key] == OFFICIAL:
                need(artifact, f"{PLAN_OWNER}/emogen-inputs")
    protocol = get_protocol(plan.protocol)
    extractors = {name for metric in protocol.metrics for name in metric_extractors(metric, protocol.name)}
    for row in rows:
        for stage in (*(("train",) if "train" in row.cost else ()), "generate"):
            need(sd, f"{row.id}/{stage}")
        if row.method == "caption-sd" and "train" in row.cost:
            settings = {**row.train}
            captions = resolve_path(workdir, settings["captions"]) if settings.get("captions") else None
            if captions is None or not captions.is_file():
                from baselines.captions import BLIP2_MODEL, BLIP2_REVISION

                model = settings.get("captioner", BLIP2_MODEL)
                revision = settings.get("captioner_revision", BLIP2_REVISION)
                need(f"hf:{model}@{revision}", f"{row.id}/train")
        for artifact in sorted({a for name in extractors for a in ARTIFACTS_BY_EXTRACTOR[name]}):
            need(artifact, f"{row.id}/evaluate")
    return needed


def _hf_present(spec: str) -> bool:
    """Whether ``hf:<repo or folder>@<revision>`` is a local folder or a complete snapshot in the Hugging Face cache."""
    name, _, revision = spec.removeprefix("hf:").rpartition("@")
    if Path(name).is_dir():
        return True
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(name, revision=None if revision in ("", "None") else revision, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return False
    return True


def missing_weights(plan: Plan, rows: Sequence[PlanRow], workdir: Path) -> list[str]:
    """One line per weight that a stage will load and that is not here (nothing is downloaded or hashed)."""
    from emogen_bench.weights import open_store

    store = open_store()
    lines = []
    for weight, stages in needed_weights(plan, rows, workdir).items():
        present = _hf_present(weight) if weight.startswith("hf:") else store.is_present(weight)
        if not present:
            fetch = "download it into the Hugging Face cache" if weight.startswith("hf:") else (
                f"`emogen-bench weights fetch {weight}`")  # fmt: skip
            lines.append(f"{weight} (loaded by {', '.join(stages)}): not here; {fetch}")
    return lines


def describe(plan: Plan, statuses: Sequence[StageStatus], missing: Sequence[str] = ()) -> list[str]:
    """The dry run's report: the plan, then each stage with what would happen and its expected GPU hours."""
    size = "TINY (smoke models, CPU)" if plan.tiny else "full size"
    lines = [
        f"plan {plan.name}: {plan.title} ({plan.path})",
        f"protocol {plan.protocol}, {plan.per_emotion} images per emotion, seed {plan.seed}, {size}",
        f"tables: {', '.join(f'{name} ({title})' for name, title in plan.tables.items())}",
    ]
    if plan.tiny:
        lines.append(SMOKE_BANNER)
    width = max(len(status.stage.key) for status in statuses)
    lines.append(f"{'stage':<{width}}  {'action':<6}  {'GPU h':>7}  why")
    for status in statuses:
        lines.append(f"{status.stage.key:<{width}}  {status.action:<6}  {status.stage.cost:>7.2f}  {status.reason}")
    todo = sum(s.stage.cost for s in statuses if s.action != "skip")
    total = sum(s.stage.cost for s in statuses)
    lines.append(f"GPU hours (estimates, docs/tables.md): {todo:.2f} to run, {total:.2f} for the whole plan")
    return lines + [f"missing data (needed before a real run): {item}" for item in missing]


def dry_run_report(plan: Plan, workdir: str | Path, *, rows: Sequence[str] | None = None) -> list[str]:
    """What :func:`run_plan` would do, stage by stage, with the GPU hours each is expected to take; writes nothing."""
    workdir = Path(workdir)
    _check_workdir(workdir, plan.tiny)
    selected = select_rows(plan, rows)
    statuses = plan_statuses(plan, selected, workdir)
    absent = missing_weights(plan, selected, workdir)
    return describe(plan, statuses, missing_data(plan, workdir)) + [
        f"missing weight (needed before a real run): {line}" for line in absent
    ]


def plan_statuses(plan: Plan, rows: Sequence[PlanRow], workdir: Path) -> list[StageStatus]:
    """The status of every stage of ``rows`` as the work folder stands, without running anything.

    A stage counts as complete (``skip``) only when its marker matches its current inputs and every
    stage it reads from is complete too.
    """
    statuses = []
    run_ids: dict[str, str | None] = {}
    for stage in plan_stages(plan, rows, workdir):
        status, _ = _status(workdir, stage, run_ids)
        marker = read_marker(workdir, stage.owner, stage.name)
        run_ids[stage.key] = marker.get("run_id") if status.action == "skip" and marker else None
        statuses.append(status)
    return statuses


def run_one_stage(
    plan: Plan, workdir: str | Path, key: str, *, show_progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the stage ``key`` (``<row>/<stage>`` or ``_plan/<stage>``) unless it is complete; returns its marker.

    What a cluster job runs (``tables run-stage``): the stages it reads from must be complete (their
    markers are read for their outputs), so a scheduler runs it after them.
    """
    workdir = Path(workdir)
    stages = {stage.key: stage for stage in plan_stages(plan, plan.rows, workdir)}
    if key not in stages:
        raise UsageError(f"{plan.path}: no stage {key!r}; the stages are: {', '.join(stages)}")
    stage = stages[key]
    ctx = Context(plan, workdir, show_progress, log)
    run_ids: dict[str, str | None] = {}
    for owner, name in stage.upstream:
        marker = read_marker(workdir, owner, name)
        if marker is None:
            raise UsageError(f"stage {key} reads {owner}/{name}, which is not complete in {workdir}; run it first")
        run_ids[f"{owner}/{name}"] = marker["run_id"]
        ctx.upstream[f"{owner}/{name}"] = {
            **marker.get("values", {}),
            **{name_: str(workdir / relative) for name_, relative in marker.get("paths", {}).items()},
        }
    status, digest = _status(workdir, stage, run_ids)
    marker = read_marker(workdir, stage.owner, stage.name)
    if status.action == "skip" and marker is not None:
        log(f"skip   {stage.key} (complete)")
        return marker
    log(f"{status.action:<6} {stage.key} ({status.reason})")
    return _run_stage(ctx, stage, digest or "", resume=status.action == "resume")


def stage_process_command(plan: Plan, workdir: Path, stage: Stage) -> list[str]:
    """The command line that runs one stage in its own process (what the executors start)."""
    command = [sys.executable, "-m", "emogen_bench", "tables", "run-stage", str(plan.path.resolve()), "--workdir",
               str(Path(workdir).resolve()), "--stage", stage.key, "--quiet"]  # fmt: skip
    if not plan.tiny:
        command += ["--emoset", plan.emoset, "--index", plan.index, "--reference-stats", plan.reference]
    return command


def prepare_workdir(plan: Plan, workdir: Path, rows: Sequence[PlanRow]) -> None:
    """Everything checked before any stage runs (work folder, data, weights), then the work folder made."""
    _check_workdir(workdir, plan.tiny)
    _check_data(plan, workdir)
    absent = missing_weights(plan, rows, workdir)
    if absent:  # before any stage runs: a missing file would otherwise surface hours into the plan
        raise WeightsError(
            f"{plan.path}: {len(absent)} weight(s) that the plan's stages load are missing (nothing was run):\n  "
            + "\n  ".join(absent)
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "regenerate.json").exists():
        document = {"format": WORKDIR_FORMAT, "version": FORMAT_VERSION, "tiny": plan.tiny, "created": _now()}
        write_json_atomic(workdir / "regenerate.json", document, overwrite=False)


#: How ``tables regenerate`` runs the stages: in this process, or as Slurm jobs (:mod:`leaderboard.slurm`).
EXECUTORS = ("local", "slurm")


def run_plan(
    plan: Plan,
    workdir: str | Path,
    *,
    dry_run: bool = False,
    rows: Sequence[str] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    slots: Sequence[str] | None = None,
) -> RunSummary:
    """Run every stage of the plan's rows that is not complete, then render the tables into ``workdir/tables``.

    Idempotent: a second run with the same plan runs no stage and writes no file. Resumable: a stage
    that crashed is resumed or restarted (module docstring). ``dry_run`` only reports (see :func:`dry_run_report`).
    ``executor="slurm"`` submits each stage as a Slurm job instead (:func:`leaderboard.slurm.run_on_slurm`).
    Locally, ``slots`` (default: one per visible GPU, a single one without GPUs) run independent stages at
    once as separate processes (:func:`leaderboard.parallel.run_in_parallel`); one slot runs them here, in turn.
    """
    workdir = Path(workdir)
    selected = select_rows(plan, rows)
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if executor == "slurm":
        from leaderboard.slurm import run_on_slurm

        return run_on_slurm(plan, workdir, selected, dry_run=dry_run, log=log)
    if dry_run:
        lines = dry_run_report(plan, workdir, rows=rows)
        return RunSummary((), (), "\n".join(lines) + "\n", {})
    from leaderboard.parallel import default_slots, run_in_parallel

    slots = list(default_slots() if slots is None else slots)
    if len(slots) > 1:
        return run_in_parallel(plan, workdir, selected, slots, log=log)
    prepare_workdir(plan, workdir, selected)
    ctx = Context(plan, workdir, show_progress, log)
    run_ids: dict[str, str | None] = {}
    statuses, ran = [], []
    for stage in plan_stages(plan, selected, workdir):
        status, digest = _status(workdir, stage, run_ids)
        statuses.append(status)
        marker = read_marker(workdir, stage.owner, stage.name)
        if status.action == "skip" and marker is not None:
            log(f"skip   {stage.key} (complete)")
        else:
            log(f"{status.action:<6} {stage.key} ({status.reason})")
            marker = _run_stage(ctx, stage, digest or "", resume=status.action == "resume")
            ran.append(stage.key)
        run_ids[stage.key] = marker["run_id"]
        ctx.upstream[stage.key] = {
            **marker.get("values", {}),
            **{key: str(workdir / relative) for key, relative in marker.get("paths", {}).items()},
        }
    markdown, outputs = write_tables(plan, workdir)
    return RunSummary(tuple(statuses), tuple(ran), markdown, outputs)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run_stage(ctx: Context, stage: Stage, digest: str, *, resume: bool) -> dict[str, Any]:
    """Run one stage; its marker is written only after it succeeded (the old one is removed before it starts)."""
    marker = marker_path(ctx.workdir, stage.owner, stage.name)
    started = started_path(ctx.workdir, stage.owner, stage.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    write_json_atomic(started, {"digest": digest, "started": _now()}, overwrite=True)
    began = time.perf_counter()
    outcome = _execute(ctx, stage, resume)
    document = {
        "format": MARKER_FORMAT,
        "version": FORMAT_VERSION,
        "stage": stage.name,
        "owner": stage.owner,
        "digest": digest,
        "run_id": uuid.uuid4().hex,
        "inputs": stage.inputs,
        "upstream": [f"{o}/{n}" for o, n in stage.upstream],
        "paths": dict(outcome.paths),
        "values": json.loads(json.dumps(dict(outcome.values), default=str)),
        "finished": _now(),
        "seconds": round(time.perf_counter() - began, 3),
    }
    write_json_atomic(marker, json.loads(json.dumps(document, default=str)), overwrite=True)
    started.unlink(missing_ok=True)
    return document


# ---- the tables ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One row of a regenerated table: the regenerated and the published value of each metric (None: absent)."""

    table: str
    row: PlanRow
    regenerated: Mapping[str, float | None]
    published: Mapping[str, float | None]
    entry: str | None
    published_id: str | None


def _metric_values(entry: Entry | None, keys: Sequence[str]) -> dict[str, float | None]:
    return {key: (entry.value(key) if entry is not None else None) for key in keys}


def _load_json_entry(path: Path, smoke: bool) -> Entry | None:
    document = _read_json(path)
    if document is None:
        return None
    if smoke:
        from leaderboard.entries import validate_smoke_entry

        return Entry(document, path) if not validate_smoke_entry(document) else None
    return check_entry(document, path)


def comparison_rows(plan: Plan, workdir: Path) -> list[ComparisonRow]:
    """Every (table, row) pair of the plan, with the row's regenerated entry (if made under the plan's current
    settings) and its published one."""
    keys = PROTOCOLS[plan.protocol].metrics
    # an entry made under other settings (a changed row, or another plan's row of the same id) is not this plan's
    current = {s.stage.key for s in plan_statuses(plan, plan.rows, workdir) if s.action == "skip"}
    found = []
    for table in plan.tables:
        for row in plan.rows:
            if table not in row.tables:
                continue
            marker = read_marker(workdir, row.id, "entry") if f"{row.id}/entry" in current else None
            entry_file = workdir / marker["paths"]["entry"] if marker and "entry" in marker.get("paths", {}) else None
            regenerated = _load_json_entry(entry_file, plan.tiny) if entry_file is not None else None
            published = None
            if row.published and plan.published is not None:
                published_file = entry_path(plan.published, row.published)
                if published_file.is_file():
                    published = check_entry(json.loads(published_file.read_text(encoding="utf-8")), published_file)
            found.append(ComparisonRow(
                table, row, _metric_values(regenerated, keys), _metric_values(published, keys),
                _relative(workdir, entry_file) if regenerated is not None and entry_file is not None else None,
                row.published,
            ))  # fmt: skip
    return found


def _arrow(key: str) -> str:
    return "↓" if key in LOWER_IS_BETTER else "↑"


def render_markdown(plan: Plan, rows: Sequence[ComparisonRow]) -> str:
    """The regenerated tables beside the published numbers, one Markdown section per table of the plan."""
    keys = PROTOCOLS[plan.protocol].metrics
    smoke = " [SMOKE]" if plan.tiny else ""
    regen = "smoke run" if plan.tiny else "regenerated"
    lines = [f"# {plan.title}{smoke}", ""]
    if plan.tiny:
        lines += [f"**{SMOKE_BANNER}.**", ""]
    lines += [f"Plan `{plan.name}`, protocol `{plan.protocol}`, {plan.per_emotion} images per emotion, seed "
              f"{plan.seed}. Each cell: {regen} / published (— where there is none).", ""]  # fmt: skip
    for table, title in plan.tables.items():
        lines += [f"## {title}{smoke}", ""]
        header = ["row", "method", *(f"{METRIC_LABELS[k]} {_arrow(k)}" for k in keys), "published entry"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for item in rows:
            if item.table != table:
                continue
            cells = [f"{_cell(k, item.regenerated[k])} / {_cell(k, item.published[k])}" for k in keys]
            label = item.row.label + smoke
            lines.append("| " + " | ".join([item.row.id, label, *cells, item.published_id or "—"]) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(key: str, value: float | None) -> str:
    return "—" if value is None else format_value(key, value)


CSV_HEADER = ("plan", "table", "row", "label", "method", "smoke", "metric", "regenerated", "published",
              "published_entry", "entry")  # fmt: skip


def render_csv(plan: Plan, rows: Sequence[ComparisonRow]) -> str:
    """One CSV line per (table, row, metric): regenerated and published values at full precision."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for item in rows:
        for key in PROTOCOLS[plan.protocol].metrics:
            regenerated, published = item.regenerated[key], item.published[key]
            writer.writerow([
                plan.name, item.table, item.row.id, item.row.label + (" [SMOKE]" if plan.tiny else ""),
                item.row.method, "SMOKE" if plan.tiny else "", key, "" if regenerated is None else repr(regenerated),
                "" if published is None else repr(published), item.published_id or "", item.entry or "",
            ])  # fmt: skip
    return buffer.getvalue()


def write_tables(plan: Plan, workdir: Path) -> tuple[str, dict[str, Path]]:
    """Render the tables into ``workdir/tables/<plan>.md`` and ``.csv`` (rewritten only when they change)."""
    rows = comparison_rows(plan, workdir)
    markdown, text = render_markdown(plan, rows), render_csv(plan, rows)
    outputs = {}
    for suffix, content in (("md", markdown), ("csv", text)):
        path = workdir / "tables" / f"{plan.name}{'-smoke' if plan.tiny else ''}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            write_atomic(path, content, overwrite=True)
        outputs[suffix] = path
    return markdown, outputs


# ---- the command ---------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emogen-bench tables regenerate PLAN --workdir W [--dry-run] [--rows ID,...]``."""
    parser = subparsers.add_parser(
        "tables",
        help="regenerate the paper's tables from experiment plans (train, generate, evaluate, compare)",
        description="Experiment plans (leaderboard/plans/*.toml) regenerate the paper's tables; docs/tables.md.",
    )
    parser.set_defaults(handler=lambda args: _help(parser))
    commands = parser.add_subparsers(dest="tables_command", metavar="COMMAND")
    regenerate = commands.add_parser(
        "regenerate",
        help="run a plan's rows (train -> generate -> evaluate -> entry), skipping complete stages",
        description=(
            "Run every row of PLAN in --workdir: train, generate, evaluate and make an entry, each stage skipped "
            "when already complete (stages/<row>/<stage>.json records its inputs' digest), then write the "
            "regenerated tables beside the published numbers to WORKDIR/tables/<plan>.md and .csv. Idempotent "
            "and resumable: run it again after a crash. --dry-run prints the stages and their expected GPU "
            "hours and runs nothing. Smoke plan: emogen-bench tables regenerate leaderboard/plans/smoke.toml "
            "--workdir W"
        ),
    )
    regenerate.add_argument("plan", type=Path, metavar="PLAN", help="a plan file, e.g. leaderboard/plans/main.toml")
    regenerate.add_argument(
        "--workdir",
        type=Path,
        required=True,
        metavar="W",
        help="the work folder (new, empty, or an earlier run's: complete stages are skipped)",
    )
    regenerate.add_argument(
        "--dry-run",
        action="store_true",
        help="print the stages that would run or be skipped and their GPU hours; run nothing",
    )
    regenerate.add_argument("--rows", metavar="ID,...", default=None, help="only these rows (comma-separated ids)")
    regenerate.add_argument("--emoset", metavar="DIR", default=None, help="override the plan's emoset path")
    regenerate.add_argument("--index", metavar="DIR", default=None, help="override the plan's index path")
    regenerate.add_argument(
        "--reference-stats", metavar="FILE", default=None, help="override the plan's reference statistics path"
    )
    regenerate.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="local (default): every stage in this process, one after the other; slurm: every stage a Slurm job "
             "(afterok dependencies, the plan's [resources]), this process waits and writes the tables",
    )  # fmt: skip
    regenerate.add_argument(
        "--slots", type=int, default=None, metavar="N",
        help="local executor: run up to N independent stages at once, each its own process on its own GPU "
             "(default: one per GPU in CUDA_VISIBLE_DEVICES; without GPUs one stage at a time, or N CPU slots)",
    )  # fmt: skip
    regenerate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    regenerate.set_defaults(handler=run_regenerate_command)
    one = commands.add_parser(
        "run-stage",
        help="run one stage of a plan (what a Slurm job of `regenerate --executor slurm` runs)",
        description="Run the stage KEY (<row>/<stage> or _plan/<stage>) of PLAN in --workdir unless it is complete; "
                    "the stages it reads from must be complete.",
    )  # fmt: skip
    one.add_argument("plan", type=Path, metavar="PLAN")
    one.add_argument("--workdir", type=Path, required=True, metavar="W")
    one.add_argument("--stage", required=True, metavar="KEY")
    one.add_argument("--emoset", metavar="DIR", default=None)
    one.add_argument("--index", metavar="DIR", default=None)
    one.add_argument("--reference-stats", metavar="FILE", default=None)
    one.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    one.set_defaults(handler=run_stage_command)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return int(ExitCode.USAGE)


def with_data_paths(plan: Plan, emoset: str | None, index: str | None, reference: str | None) -> Plan:
    """The plan with its data paths overridden (absolute paths, so they do not depend on the work folder)."""
    if plan.tiny and (emoset or index or reference):
        raise UsageError("--emoset, --index and --reference-stats apply to full-size plans; a tiny plan makes its own")
    changes = {key: str(Path(value).resolve()) for key, value in
               (("emoset", emoset), ("index", index), ("reference", reference)) if value}  # fmt: skip
    return dataclasses.replace(plan, **changes)


def run_stage_command(args: argparse.Namespace) -> int:
    plan = with_data_paths(load_plan(args.plan), args.emoset, args.index, args.reference_stats)
    run_one_stage(plan, args.workdir, args.stage, show_progress=not args.quiet)
    return int(ExitCode.OK)


def run_regenerate_command(args: argparse.Namespace) -> int:
    plan = with_data_paths(load_plan(args.plan), args.emoset, args.index, args.reference_stats)
    rows = [part.strip() for part in args.rows.split(",") if part.strip()] if args.rows else None
    slots = None
    if args.slots is not None:
        from leaderboard.parallel import cpu_slots, default_slots

        gpus = default_slots()
        slots = cpu_slots(args.slots) if gpus == ["cpu"] else gpus[: max(args.slots, 1)]
    summary = run_plan(plan, args.workdir, dry_run=args.dry_run, rows=rows, show_progress=not args.quiet,
                       executor=args.executor, slots=slots,
                       log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    sys.stdout.write(summary.markdown)
    if not args.dry_run:
        print(f"tables: {summary.outputs['md']} and {summary.outputs['csv']}", file=sys.stderr)
        print(f"stages run: {len(summary.ran)}, skipped: {len(summary.skipped)}", file=sys.stderr)
    return int(ExitCode.OK)


__all__ = [
    "Plan",
    "PlanRow",
    "RunSummary",
    "comparison_rows",
    "dry_run_report",
    "jpeg_copy",
    "load_plan",
    "plan_stages",
    "register",
    "render_csv",
    "render_markdown",
    "run_plan",
    "select_rows",
]
