"""The stage graph of a plan: the stages of each row and of the plan, the digest of their inputs, and the
markers that say a stage is complete (``stages/<owner>/<stage>.json``) or was started (``.started.json``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emogen_bench import __version__
from emogen_bench.errors import UsageError
from emogen_bench.safe_read import read_json
from leaderboard.regenerate.plan import (
    DEFAULT_GPUS,
    EMOGEN,
    MARKER_FORMAT,
    MULTI_PROCESS_STAGES,
    OFFICIAL,
    PLAN_OWNER,
    TRAIN_TINY,
    Plan,
    PlanRow,
    resolve_path,
)


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
    document = read_json_or_none(marker_path(workdir, owner, name))
    if document is None or document.get("format") != MARKER_FORMAT:
        return None
    return document


def marker_complete(workdir: Path, marker: Mapping[str, Any] | None, digest: str | None) -> bool:
    """Whether ``marker`` records a finished stage with ``digest`` whose output paths all still exist."""
    if marker is None or digest is None or marker.get("digest") != digest:
        return False
    paths = marker.get("paths", {})
    return isinstance(paths, dict) and all((workdir / relative).exists() for relative in paths.values())


@dataclass(frozen=True)
class StageStatus:
    """A stage as the dry run or the run reports it: ``action`` is ``skip``, ``run`` or ``resume``."""

    stage: Stage
    action: str
    reason: str


def stage_status(workdir: Path, stage: Stage, run_ids: Mapping[str, str | None]) -> tuple[StageStatus, str | None]:
    """Whether ``stage`` is complete given the run ids of its upstream stages (``None``: will run first)."""
    upstream = {f"{o}/{n}": run_ids.get(f"{o}/{n}") for o, n in stage.upstream}
    pending = [key for key, run_id in upstream.items() if run_id is None]
    if pending:
        return StageStatus(stage, "run", f"after {', '.join(pending)}"), None
    digest = stage_digest(stage, upstream)  # type: ignore[arg-type]
    marker = read_marker(workdir, stage.owner, stage.name)
    if marker_complete(workdir, marker, digest):
        return StageStatus(stage, "skip", "complete"), digest
    started = read_json_or_none(started_path(workdir, stage.owner, stage.name))
    if started is not None and started.get("digest") == digest:
        return StageStatus(stage, "resume", "an earlier attempt did not finish"), digest
    if marker is not None:
        return StageStatus(
            stage, "run", "inputs changed" if marker.get("digest") != digest else "outputs missing"
        ), digest
    return StageStatus(stage, "run", "not run yet"), digest


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """A JSON object the work folder holds, or ``None`` when it is absent, damaged or not a file (a FIFO is not
    opened): the stage that owns it then runs again."""
    try:  # read_json refuses a missing or special file by type, before opening it
        document = read_json(path, "work-folder record", UsageError)
    except UsageError:
        return None
    return document if isinstance(document, dict) else None


def plan_statuses(plan: Plan, rows: Sequence[PlanRow], workdir: Path) -> list[StageStatus]:
    """The status of every stage of ``rows`` as the work folder stands, without running anything.

    A stage counts as complete (``skip``) only when its marker matches its current inputs and every
    stage it reads from is complete too.
    """
    statuses = []
    run_ids: dict[str, str | None] = {}
    for stage in plan_stages(plan, rows, workdir):
        status, _ = stage_status(workdir, stage, run_ids)
        marker = read_marker(workdir, stage.owner, stage.name)
        run_ids[stage.key] = marker.get("run_id") if status.action == "skip" and marker else None
        statuses.append(status)
    return statuses


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stage_resources(plan: Plan, row: PlanRow | None, stage: Stage) -> dict[str, Any]:
    """The plan's ``[resources]`` with the row's over them; ``gpus`` resolved to this stage's count."""
    merged: dict[str, Any] = {**plan.resources, **(row.resources if row is not None else {})}
    gpus = {**({} if plan.tiny else DEFAULT_GPUS), **plan.resources.get("gpus", {}),
            **(row.resources.get("gpus", {}) if row is not None else {})}  # fmt: skip
    merged["gpus"] = int(gpus.get(stage.name, 0))
    return merged


def stage_processes(plan: Plan, stage: Stage, resources: Mapping[str, Any] | None = None) -> int:
    """How many processes a stage runs on: one per GPU it asks for if it is ``train``, ``generate`` or
    ``evaluate`` (spread over them), one otherwise."""
    if stage.name not in MULTI_PROCESS_STAGES:
        return 1
    if resources is None:
        resources = stage_resources(plan, None if stage.owner == PLAN_OWNER else plan.row(stage.owner), stage)
    return max(1, int(resources["gpus"]))
