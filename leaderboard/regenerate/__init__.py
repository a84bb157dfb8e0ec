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

The modules, in the order a run goes through them:

- :mod:`.plan`: the plan file, read and checked (rows, settings, ``[resources]``);
- :mod:`.stages`: the stage graph, the digest of each stage's inputs, the markers;
- :mod:`.checks`: what is checked before anything runs (work folder, data, weights);
- :mod:`.work`: what each stage does (train, generate, evaluate, entry, and the plan's own stages);
- :mod:`.run`: the dry run, one stage in this process, and the local executor;
- :mod:`.parallel` and :mod:`.slurm`: the executors that run each stage as its own process or Slurm job;
- :mod:`.comparison`: the tables written from the markers;
- :mod:`.cli`: ``emogen-bench tables regenerate`` and ``tables run-stage``.
"""

from __future__ import annotations

from leaderboard.regenerate.comparison import comparison_rows, render_csv, render_markdown, write_tables
from leaderboard.regenerate.plan import ROW_STAGES, SMOKE_BANNER, WORKDIR_FORMAT, Plan, PlanRow, load_plan, select_rows
from leaderboard.regenerate.run import RunSummary, dry_run_report, run_one_stage, run_plan
from leaderboard.regenerate.stages import plan_stages, stage_digest
from leaderboard.regenerate.work import jpeg_copy

__all__ = [
    "Plan",
    "PlanRow",
    "ROW_STAGES",
    "RunSummary",
    "SMOKE_BANNER",
    "WORKDIR_FORMAT",
    "comparison_rows",
    "dry_run_report",
    "jpeg_copy",
    "load_plan",
    "plan_stages",
    "render_csv",
    "render_markdown",
    "run_one_stage",
    "run_plan",
    "select_rows",
    "stage_digest",
    "write_tables",
]
