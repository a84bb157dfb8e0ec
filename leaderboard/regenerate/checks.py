"""What is checked before any stage runs: the work folder, the plan's data, every weight its stages load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError, WeightsError
from emogen_bench.fileio import write_json_atomic
from emogen_bench.safe_read import file_kind, read_json
from leaderboard.regenerate.plan import (
    EMOGEN,
    FORMAT_VERSION,
    OFFICIAL,
    PLAN_OWNER,
    WORKDIR_FORMAT,
    Plan,
    PlanRow,
    resolve_path,
)
from leaderboard.regenerate.stages import utc_now

#: The file that marks a work folder of ``emogen-bench tables regenerate``.
WORKDIR_MARKER = "regenerate.json"


def read_workdir_marker(workdir: Path) -> dict[str, Any] | None:
    """The work folder's ``regenerate.json``, None when there is none; read through safe_read, so a FIFO or a
    broken file there is a :class:`UsageError` naming it (never a hang, never a crash)."""
    path = workdir / WORKDIR_MARKER
    if file_kind(path) == "missing":
        return None
    document = read_json(path, "work folder marker", UsageError)
    if not isinstance(document, dict):
        raise UsageError(f"{path}: the work folder marker is not a JSON object; is --workdir the right folder?")
    return document


def check_workdir(workdir: Path, tiny: bool) -> None:
    """Refuse a folder that is neither new, empty, nor a work folder of this command (its files are not ours),
    and a work folder of full-size plans for a tiny one or the reverse (rows share their folders by id)."""
    if not workdir.exists():
        return
    kind = file_kind(workdir)
    if kind != "a folder":
        raise UsageError(f"--workdir {workdir} is {kind or 'a file'}; give a new folder or an earlier work folder")
    marker = read_workdir_marker(workdir)
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


def check_data(plan: Plan, workdir: Path) -> None:
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


def prepare_workdir(plan: Plan, workdir: Path, rows: Sequence[PlanRow]) -> None:
    """Everything checked before any stage runs (work folder, data, weights), then the work folder made."""
    check_workdir(workdir, plan.tiny)
    check_data(plan, workdir)
    absent = missing_weights(plan, rows, workdir)
    if absent:  # before any stage runs: a missing file would otherwise surface hours into the plan
        raise WeightsError(
            f"{plan.path}: {len(absent)} weight(s) that the plan's stages load are missing (nothing was run):\n  "
            + "\n  ".join(absent)
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / WORKDIR_MARKER).exists():
        document = {"format": WORKDIR_FORMAT, "version": FORMAT_VERSION, "tiny": plan.tiny, "created": utc_now()}
        write_json_atomic(workdir / WORKDIR_MARKER, document, overwrite=False)
