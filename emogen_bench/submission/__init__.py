"""Submissions: the folder format, ``submission.json``, validation, and a synthetic example.

A submission is ``DIR/<emotion>/<image>`` for the eight emotions plus an optional
``DIR/submission.json``; ``docs/submission.md`` documents the format and every rule.
"""

from __future__ import annotations

from emogen_bench.submission.example import write_example_submission
from emogen_bench.submission.metadata import (
    SCHEMA_VERSION,
    MetadataIssue,
    SubmissionMetadata,
    parse_metadata,
    parse_metadata_json,
    read_metadata,
    write_metadata,
)
from emogen_bench.submission.validate import (
    PROBLEM_CODES,
    ManifestEntry,
    Problem,
    ValidationReport,
    resolve_run,
    run_label,
    validate_submission,
)

__all__ = [
    "PROBLEM_CODES",
    "SCHEMA_VERSION",
    "ManifestEntry",
    "MetadataIssue",
    "Problem",
    "SubmissionMetadata",
    "ValidationReport",
    "parse_metadata",
    "parse_metadata_json",
    "read_metadata",
    "resolve_run",
    "run_label",
    "validate_submission",
    "write_example_submission",
    "write_metadata",
]
