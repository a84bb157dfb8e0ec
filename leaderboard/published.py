"""The published numbers of the EmoGen paper as leaderboard entries (PROTOCOL.md section 7), held as data.

The committed files under ``leaderboard/entries/emogen-paper-code/`` are
written from :func:`published_documents`; a test checks that they equal it and
that its numbers equal PROTOCOL.md's tables, so neither can drift.  Regenerate
with ``python -m leaderboard.published [--entries DIR] [--replace]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import BenchError
from emogen_bench.protocols import PAPER_CODE
from leaderboard.entries import ENTRY_SCHEMA, ENTRY_SCHEMA_VERSION, check_entry, slugify, store_entry
from leaderboard.resources import REPOSITORY_ENTRIES

#: The date these rows were added to the leaderboard (fixed, so the files do not change when regenerated).
ADDED = "2026-11-27"
REFERENCE = (
    'Jingyuan Yang, Jiawei Feng, Hui Huang, "EmoGen: Emotional Image Content Generation with Text-to-Image '
    'Diffusion Models", CVPR 2024 (arXiv:2401.04608)'
)
URL = "https://arxiv.org/abs/2401.04608"
CODE = "https://github.com/JingyuanYY/EmoGen"

MAIN_TABLE = "main paper, Table 1 (also the repository README)"
SUPPLEMENT_TABLE = "supplementary material, Table 1"
USER_STUDY = "main paper, user study"

SUPPLEMENT_CAPTION_NOTE = (
    "The supplement's Table 1 caption ('Ablation study on the layer number of the non-linear projection, involving "
    "five metrics.') does not match its rows, which are taken as labelled."
)


@dataclass(frozen=True)
class PublishedRow:
    """One method's published numbers: FID, LPIPS, Emo-A (%), Sem-C, Sem-D; user study versus EmoGen in %."""

    method: str
    fid: float
    lpips: float
    emo_a_percent: float
    sem_c: float
    sem_d: float
    where: tuple[str, ...]
    paper: str | None = None
    code: str | None = None
    notes: str | None = None
    #: (fidelity, emotion, diversity) as (mean, sd): share of participants preferring EmoGen, in percent.
    user_study: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None


SD_PAPER = "https://arxiv.org/abs/2112.10752"
TI_PAPER = "https://arxiv.org/abs/2208.01618"
DB_PAPER = "https://arxiv.org/abs/2208.12242"

ROWS: tuple[PublishedRow, ...] = (
    PublishedRow(
        "Stable Diffusion", 44.05, 0.687, 70.77, 0.608, 0.0199, (MAIN_TABLE, USER_STUDY), paper=SD_PAPER,
        notes="The emotion word in the prompt (no training).",
        user_study=((67.86, 15.08), (73.66, 11.80), (87.88, 9.64)),
    ),
    PublishedRow(
        "Textual Inversion", 50.51, 0.702, 74.87, 0.605, 0.0282, (MAIN_TABLE, USER_STUDY), paper=TI_PAPER,
        notes="One concept per emotion, trained on all EmoSet-subset images of that emotion.",
        user_study=((79.91, 16.92), (72.75, 16.90), (85.66, 10.51)),
    ),
    PublishedRow(
        "DreamBooth", 46.89, 0.661, 70.50, 0.614, 0.0178, (MAIN_TABLE, SUPPLEMENT_TABLE, USER_STUDY), paper=DB_PAPER,
        notes="One concept per emotion, trained on all EmoSet-subset images of that emotion. Also the "
        "supplement's 'DB' row, same numbers. " + SUPPLEMENT_CAPTION_NOTE,
        user_study=((77.23, 14.00), (80.79, 8.64), (81.68, 17.06)),
    ),
    PublishedRow(
        "EmoGen", 41.60, 0.717, 76.25, 0.633, 0.0335, (MAIN_TABLE, SUPPLEMENT_TABLE), paper=URL, code=CODE,
        notes="Also the supplement's 'Ours' row, same numbers. " + SUPPLEMENT_CAPTION_NOTE,
    ),
    PublishedRow(
        "DB (5 images)", 160.46, 0.638, 71.03, 0.530, 0.0129, (SUPPLEMENT_TABLE,), paper=DB_PAPER,
        notes="DreamBooth variant of the supplement. " + SUPPLEMENT_CAPTION_NOTE,
    ),
    PublishedRow(
        "DB (5000 images)", 60.87, 0.652, 50.77, 0.509, 0.0163, (SUPPLEMENT_TABLE,), paper=DB_PAPER,
        notes="DreamBooth variant of the supplement. " + SUPPLEMENT_CAPTION_NOTE,
    ),
    PublishedRow(
        "DB (balance strategy)", 54.15, 0.648, 55.38, 0.490, 0.0146, (SUPPLEMENT_TABLE,), paper=DB_PAPER,
        notes="DreamBooth variant of the supplement. " + SUPPLEMENT_CAPTION_NOTE,
    ),
    PublishedRow(
        "SD (caption finetune)", 54.81, 0.697, 72.82, 0.584, 0.0219, (SUPPLEMENT_TABLE,),
        notes="Stable Diffusion fine-tuned on BLIP-2 (Salesforce/blip2-opt-2.7b) captions prefixed with the "
        "emotion. " + SUPPLEMENT_CAPTION_NOTE,
    ),
)  # fmt: skip


def _metric(value: float) -> dict[str, Any]:
    # The paper gives neither intervals nor the number of images behind each value.
    return {"value": value, "ci95": None, "n": None}


def published_document(row: PublishedRow) -> dict[str, Any]:
    """The ``published`` entry of one row under the paper-code protocol (accuracies as fractions)."""
    user_study = None
    if row.user_study is not None:
        user_study = {"versus": "EmoGen"}
        for aspect, (mean, sd) in zip(("fidelity", "emotion", "diversity"), row.user_study):
            user_study[aspect] = {"mean": mean, "sd": sd}
    return {
        "schema": ENTRY_SCHEMA,
        "schema_version": ENTRY_SCHEMA_VERSION,
        "id": f"{PAPER_CODE}/{slugify(row.method)}",
        "method": row.method,
        "status": "published",
        "protocol": PAPER_CODE,
        "paper": row.paper,
        "code": row.code,
        "added": ADDED,
        "citation": {"reference": REFERENCE, "where": list(row.where), "url": URL},
        "verified_by": None,
        "notes": row.notes,
        "provenance": None,
        "metrics": {
            "overall": {
                "fid": _metric(row.fid),
                "lpips": _metric(row.lpips),
                "emo_a": _metric(round(row.emo_a_percent / 100, 6)),
                "sem_c": _metric(row.sem_c),
                "sem_d": _metric(row.sem_d),
            },
            "per_emotion": {},
        },
        "user_study": user_study,
    }


def published_documents() -> list[dict[str, Any]]:
    """Every published row as a valid entry document, in the order of PROTOCOL.md section 7."""
    return [dict(check_entry(published_document(row)).document) for row in ROWS]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the published entries under ``--entries`` (default ``leaderboard/entries``)."""
    parser = argparse.ArgumentParser(prog="python -m leaderboard.published", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--entries", type=Path, default=REPOSITORY_ENTRIES, metavar="DIR",
        help=f"the entries folder to write (default {REPOSITORY_ENTRIES}, relative to the current folder: the "
             "checkout's, never the copy installed with the package)",
    )  # fmt: skip
    parser.add_argument("--replace", action="store_true", help="replace entries whose content changed")
    args = parser.parse_args(argv)
    try:
        for document in published_documents():
            outcome = store_entry(check_entry(document), args.entries, replace=args.replace)
            print(f"{outcome.action}: {outcome.path}")
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
