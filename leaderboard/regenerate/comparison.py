"""The regenerated tables beside the published numbers, as Markdown and CSV."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emogen_bench.fileio import write_atomic
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.report import format_value
from emogen_bench.results import LOWER_IS_BETTER, METRIC_LABELS
from leaderboard.entries import Entry, check_entry, entry_path, read_entry
from leaderboard.escape import csv_row, markdown_text
from leaderboard.regenerate.plan import SMOKE_BANNER, Plan, PlanRow
from leaderboard.regenerate.stages import plan_statuses, read_json_or_none, read_marker
from leaderboard.regenerate.work import relative_to_workdir


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
    document = read_json_or_none(path)
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
                    published = read_entry(published_file, plan.published)
            found.append(ComparisonRow(
                table, row, _metric_values(regenerated, keys), _metric_values(published, keys),
                None if regenerated is None or entry_file is None else relative_to_workdir(workdir, entry_file),
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
    lines = [f"# {markdown_text(plan.title)}{smoke}", ""]
    if plan.tiny:
        lines += [f"**{SMOKE_BANNER}.**", ""]
    lines += [f"Plan `{plan.name}`, protocol `{plan.protocol}`, {plan.per_emotion} images per emotion, seed "
              f"{plan.seed}. Each cell: {regen} / published (— where there is none).", ""]  # fmt: skip
    for table, title in plan.tables.items():
        lines += [f"## {markdown_text(title)}{smoke}", ""]
        header = ["row", "method", *(f"{METRIC_LABELS[k]} {_arrow(k)}" for k in keys), "published entry"]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for item in rows:
            if item.table != table:
                continue
            cells = [f"{_cell(k, item.regenerated[k])} / {_cell(k, item.published[k])}" for k in keys]
            label = markdown_text(item.row.label) + smoke
            published = markdown_text(item.published_id or "—")
            lines.append("| " + " | ".join([item.row.id, label, *cells, published]) + " |")
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
            writer.writerow(csv_row([
                plan.name, item.table, item.row.id, item.row.label + (" [SMOKE]" if plan.tiny else ""),
                item.row.method, "SMOKE" if plan.tiny else "", key, "" if regenerated is None else repr(regenerated),
                "" if published is None else repr(published), item.published_id or "", item.entry or "",
            ]))  # fmt: skip
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
