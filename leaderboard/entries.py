"""Leaderboard entries: one JSON document per method and protocol (schema ``emogen-bench/leaderboard-entry`` v1).

An entry is stored as ``<entries dir>/<protocol>/<slug>.json`` and its ``id`` is
``<protocol>/<slug>``, so entries are git-friendly (one file each) and two
protocols never share a file name space.  :func:`validate_entry` lists every
problem of a document; :func:`entry_from_results` turns an ``evaluate`` results
JSON into an entry only when the run is the official protocol with official
weights and the file is consistent (manifest, counts and digest agree; digests
checked against the weights registry, unpinned ones marked); :func:`store_entry`
never replaces a different entry unless asked.
The fields are described in docs/leaderboard.md.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from emogen_bench.errors import BenchError, InvalidInputError, UsageError
from emogen_bench.fileio import write_atomic
from emogen_bench.hashing import SHA256_HEX, digest_listing
from emogen_bench.metrics.intervals import METRIC_DOMAINS, UNBIASED_ESTIMATES
from emogen_bench.protocols import PROTOCOLS
from emogen_bench.results import METRIC_LABELS
from emogen_bench.results import SCHEMA as RESULTS_SCHEMA
from emogen_bench.results import SCHEMA_VERSION as RESULTS_SCHEMA_VERSION
from emogen_bench.safe_read import file_kind, read_json
from emogen_bench.task import EMOTION_NAMES, SUBMISSION
from emogen_bench.weights.registry import ArtifactSpec, Registry, load_registry, reference_stats_id
from leaderboard.escape import http_url

ENTRY_SCHEMA = "emogen-bench/leaderboard-entry"
ENTRY_SCHEMA_VERSION = 1

#: ``verified``: the maintainers re-ran evaluate on the submitted images; ``self-reported``: the
#: author's own results JSON; ``published``: numbers copied from a paper, with a citation.
STATUSES: tuple[str, ...] = ("verified", "self-reported", "published")

#: Top-level fields of an entry, in the order they are written.
FIELDS: tuple[str, ...] = (
    "schema",
    "schema_version",
    "id",
    "method",
    "status",
    "protocol",
    "paper",
    "code",
    "added",
    "citation",
    "verified_by",
    "notes",
    "provenance",
    "metrics",
    "user_study",
)
PROVENANCE_FIELDS: tuple[str, ...] = (
    "benchmark_version",
    "results_schema_version",
    "created",
    "submission_digest",
    "n_images",
    "counts",
    "run_kind",
    "official_weights",
    "artifacts",
    "reference_sha256",
    "seed",
    "environment",
)
#: Provenance fields ``leaderboard add`` writes since issue 13; optional, so entries written before still load.
#: ``unpinned_artifacts``: the ids of weights the registry does not pin to a full sha256 (trust on first use, a
#: sha256 prefix, or not in the registry); ``reference_stats_known``: whether the reference statistics are the
#: registry's ``ref-stats-<protocol>``.
OPTIONAL_PROVENANCE_FIELDS: tuple[str, ...] = ("unpinned_artifacts", "reference_stats_known")
USER_STUDY_ASPECTS: tuple[str, ...] = ("fidelity", "emotion", "diversity")

#: The most images a value can come from: a complete submission overall, one emotion's share per emotion.
MAX_N_OVERALL = SUBMISSION.images_per_emotion * len(EMOTION_NAMES)
MAX_N_PER_EMOTION = SUBMISSION.images_per_emotion

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
DOCS = "docs/leaderboard.md"


@dataclass(frozen=True)
class Entry:
    """A validated entry document; ``path`` is the file it was read from, if any.

    The document stays a plain dict (the site renderer and the JSON file use it
    as is); the properties name the fields the tables need.
    """

    document: Mapping[str, Any]
    path: Path | None = None

    @property
    def id(self) -> str:
        return self.document["id"]

    @property
    def slug(self) -> str:
        return self.id.split("/", 1)[1]

    @property
    def method(self) -> str:
        return self.document["method"]

    @property
    def status(self) -> str:
        return self.document["status"]

    @property
    def protocol(self) -> str:
        return self.document["protocol"]

    @property
    def overall(self) -> Mapping[str, Mapping[str, Any]]:
        """``{metric key: {value, ci95, n}}`` over all images."""
        return self.document["metrics"]["overall"]

    @property
    def provenance(self) -> Mapping[str, Any] | None:
        return self.document["provenance"]

    def value(self, key: str) -> float | None:
        """The overall value of ``key``, or ``None`` where the entry does not report it."""
        metric = self.overall.get(key)
        return None if metric is None else float(metric["value"])


# --- validation ---------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_url(value: Any) -> bool:
    return http_url(value) is not None


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None


def _domain_problem(key: str, value: float) -> str | None:
    """Why ``value`` cannot be a value of metric ``key`` (see :data:`METRIC_DOMAINS`); None when it can."""
    low, high = METRIC_DOMAINS.get(key, (None, None))
    if low is not None and high is not None and not low <= value <= high:
        label = METRIC_LABELS[key]
        return f"{value!r} is not a fraction from {low:g} to {high:g} ({label} is stored as 0.7077, not 70.77)"
    if low is not None and value < low:
        return f"{value!r} is negative; {METRIC_LABELS[key]} is never below {low:g}"
    return None


def _metric_value_problems(where: str, key: str, metric: Any, max_n: int = MAX_N_OVERALL) -> list[str]:
    """Problems of one ``{value, ci95, n}`` block at ``where``; ``n`` is at most ``max_n`` images."""
    if not isinstance(metric, dict):
        return [f"{where}: expected an object {{value, ci95, n}}, got {type(metric).__name__}"]
    problems = []
    unknown = sorted(set(metric) - {"value", "ci95", "n"})
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: value, ci95, n")
    value = metric.get("value")
    if not _is_number(value):
        problems.append(f"{where}.value: expected a finite number, got {value!r}")
    elif key not in UNBIASED_ESTIMATES and (domain := _domain_problem(key, value)) is not None:
        problems.append(f"{where}.value: {domain}")  # KID's unbiased estimate may fall just below 0
    ci95 = metric.get("ci95")
    if ci95 is not None:
        if not (isinstance(ci95, list) and len(ci95) == 2 and all(_is_number(bound) for bound in ci95)):
            problems.append(f"{where}.ci95: expected null or [low, high] with two finite numbers, got {ci95!r}")
        elif ci95[0] > ci95[1]:
            problems.append(f"{where}.ci95: low {ci95[0]!r} is above high {ci95[1]!r}")
        else:  # intervals are clipped to the metric's domain when computed
            problems += [f"{where}.ci95: {problem}" for b in ci95 if (problem := _domain_problem(key, b)) is not None]
    n = metric.get("n")
    if n is not None and not (_is_int(n) and 0 < n <= max_n):
        problems.append(
            f"{where}.n: expected null or a positive integer of at most {max_n:,} (the images the value comes "
            f"from), got {n!r}"
        )
    return problems


def _metrics_problems(document: Mapping[str, Any], metric_keys: Sequence[str] | None) -> list[str]:
    """Problems of ``metrics``; ``metric_keys`` are the protocol's (``None`` when the protocol is unknown)."""
    metrics = document.get("metrics")
    if not isinstance(metrics, dict):
        return [f"metrics: expected an object {{overall, per_emotion}}, got {type(metrics).__name__}"]
    problems = []
    unknown = sorted(set(metrics) - {"overall", "per_emotion"})
    if unknown:
        problems.append(f"metrics: unknown field(s) {', '.join(unknown)}; allowed: overall, per_emotion")
    protocol = document.get("protocol")

    def check_block(where: str, block: Any, *, complete: bool, max_n: int) -> None:
        if not isinstance(block, dict):
            problems.append(f"{where}: expected an object {{metric: {{value, ci95, n}}}}, got {type(block).__name__}")
            return
        for key, metric in block.items():
            if metric_keys is not None and key not in metric_keys:
                problems.append(
                    f"{where}.{key}: not a metric of protocol {protocol!r} (its metrics: {', '.join(metric_keys)})"
                )
                continue
            problems.extend(_metric_value_problems(f"{where}.{key}", key, metric, max_n))
        if complete and metric_keys is not None:
            missing = [key for key in metric_keys if key not in block]
            if missing:
                problems.append(f"{where}: missing metric(s) {', '.join(missing)} of protocol {protocol!r}")

    # A paper may not report every metric; an evaluated entry always has them all.
    check_block(
        "metrics.overall", metrics.get("overall"), complete=document.get("status") != "published", max_n=MAX_N_OVERALL
    )
    per_emotion = metrics.get("per_emotion", {})
    if not isinstance(per_emotion, dict):
        problems.append(f"metrics.per_emotion: expected an object {{emotion: {{...}}}}, got {per_emotion!r}")
        return problems
    for emotion, block in per_emotion.items():
        if emotion not in EMOTION_NAMES:
            problems.append(f"metrics.per_emotion.{emotion}: unknown emotion; known: {', '.join(EMOTION_NAMES)}")
            continue
        check_block(f"metrics.per_emotion.{emotion}", block, complete=False, max_n=MAX_N_PER_EMOTION)
    return problems


def _citation_problems(citation: Any, status: Any) -> list[str]:
    if status != "published":
        return [] if citation is None else [f"citation: only published entries carry a citation (status {status!r})"]
    if citation is None:
        return ["citation: required for a published entry: {reference, where: [table/page, ...], url}"]
    if not isinstance(citation, dict):
        return [f"citation: expected an object {{reference, where, url}}, got {type(citation).__name__}"]
    problems = []
    unknown = sorted(set(citation) - {"reference", "where", "url"})
    if unknown:
        problems.append(f"citation: unknown field(s) {', '.join(unknown)}; allowed: reference, where, url")
    if not _is_text(citation.get("reference")):
        problems.append("citation.reference: required text (authors, title, venue, year)")
    where = citation.get("where")
    if not (isinstance(where, list) and where and all(_is_text(item) for item in where)):
        problems.append(f"citation.where: expected a non-empty list of places (e.g. 'Table 1, p. 6'), got {where!r}")
    url = citation.get("url")
    if url is not None and not _is_url(url):
        problems.append(f"citation.url: expected null or an http(s) URL, got {url!r}")
    return problems


def _provenance_problems(provenance: Any, status: Any) -> list[str]:
    if status == "published":
        return [] if provenance is None else ["provenance: a published entry has none (its numbers come from a paper)"]
    if provenance is None:
        return [f"provenance: required for a {status} entry ('emogen-bench leaderboard add' writes it from results)"]
    if not isinstance(provenance, dict):
        return [f"provenance: expected an object, got {type(provenance).__name__}"]
    problems = []
    missing = [name for name in PROVENANCE_FIELDS if name not in provenance]
    if missing:
        problems.append(f"provenance: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(provenance) - set(PROVENANCE_FIELDS) - set(OPTIONAL_PROVENANCE_FIELDS))
    if unknown:
        problems.append(f"provenance: unknown field(s) {', '.join(unknown)}")
    problems += _trust_field_problems(provenance, status)
    checks = {
        "benchmark_version": (_is_text, "the emogen-bench version"),
        "results_schema_version": (lambda v: v == RESULTS_SCHEMA_VERSION, f"{RESULTS_SCHEMA_VERSION}"),
        "created": (_is_text, "the time the results were made"),
        "submission_digest": (lambda v: isinstance(v, str) and DIGEST.fullmatch(v), "'sha256:' and 64 hex digits"),
        "n_images": (lambda v: v == SUBMISSION.images_per_emotion * len(EMOTION_NAMES), "the official image count"),
        "run_kind": (lambda v: v == "official", "'official' (a reduced run is not the protocol)"),
        "official_weights": (lambda v: v is True, "true (every weight the official pinned one)"),
        "artifacts": (
            lambda v: isinstance(v, dict) and all(isinstance(d, str) for d in v.values()),
            "an object {artifact id: digest}",
        ),
        "reference_sha256": (lambda v: v is None or isinstance(v, str), "null or the reference statistics' sha256"),
        "seed": (_is_int, "an integer"),
        "environment": (lambda v: isinstance(v, dict), "an object"),
    }
    for name, (check, expected) in checks.items():
        if name in provenance and not check(provenance[name]):
            problems.append(f"provenance.{name}: expected {expected}, got {provenance[name]!r}")
    if "counts" in provenance:
        problems += [f"provenance.counts: {problem}" for problem in count_problems(provenance["counts"])]
    return problems


def _trust_field_problems(provenance: Mapping[str, Any], status: Any) -> list[str]:
    """Problems of the optional ``unpinned_artifacts`` and ``reference_stats_known``; a verified entry needs every
    weight pinned and the registry's reference statistics (an entry without the fields predates them)."""
    problems = []
    unpinned = provenance.get("unpinned_artifacts", [])
    if not (isinstance(unpinned, list) and all(_is_text(name) for name in unpinned)):
        problems.append(f"provenance.unpinned_artifacts: expected a list of artifact ids, got {_shown(unpinned)}")
    elif unpinned and status == "verified":
        problems.append(
            f"provenance.unpinned_artifacts: a verified entry cannot use unpinned weights ({', '.join(unpinned)})"
        )
    known = provenance.get("reference_stats_known", True)
    if not isinstance(known, bool):
        problems.append(f"provenance.reference_stats_known: expected true or false, got {_shown(known)}")
    elif not known and status == "verified":
        problems.append("provenance.reference_stats_known: a verified entry needs the registry's reference statistics")
    return problems


def _user_study_problems(user_study: Any) -> list[str]:
    if user_study is None:
        return []
    if not isinstance(user_study, dict):
        return [f"user_study: expected null or an object {{versus, fidelity, emotion, diversity}}, got {user_study!r}"]
    problems = []
    unknown = sorted(set(user_study) - {"versus", *USER_STUDY_ASPECTS})
    if unknown:
        problems.append(f"user_study: unknown field(s) {', '.join(unknown)}")
    if not _is_text(user_study.get("versus")):
        problems.append("user_study.versus: required: the method the participants compared this one with")
    for aspect in USER_STUDY_ASPECTS:
        block = user_study.get(aspect)
        if not (isinstance(block, dict) and set(block) == {"mean", "sd"}):
            problems.append(f"user_study.{aspect}: expected {{mean, sd}} in percent, got {block!r}")
            continue
        if not (_is_number(block["mean"]) and 0.0 <= block["mean"] <= 100.0):
            problems.append(f"user_study.{aspect}.mean: expected a percentage from 0 to 100, got {block['mean']!r}")
        if not (_is_number(block["sd"]) and block["sd"] >= 0.0):
            problems.append(f"user_study.{aspect}.sd: expected a non-negative number, got {block['sd']!r}")
    return problems


def count_problems(counts: Any) -> list[str]:
    """What keeps ``counts`` ({emotion: images}) from being a complete official run; empty when it is one."""
    if not isinstance(counts, dict):
        return [f"expected an object {{emotion: number of images}}, got {counts!r}"]
    official = SUBMISSION.images_per_emotion
    problems = [f"emotion {e!r} missing" for e in EMOTION_NAMES if e not in counts]
    problems += [f"unknown emotion {e!r}" for e in counts if e not in EMOTION_NAMES]
    problems += [
        f"{e}: {counts[e]!r} images, the protocol needs exactly {official}"
        for e in EMOTION_NAMES
        if e in counts and counts[e] != official
    ]
    return problems


def validate_entry(document: Any, path: str | Path | None = None) -> list[str]:
    """Every problem of an entry document, each naming its field; an empty list means valid.

    With ``path`` (``<entries dir>/<protocol>/<slug>.json``) the id must also
    match where the file lies.
    """
    if not isinstance(document, dict):
        return [f"expected a JSON object (a leaderboard entry), got {type(document).__name__}"]
    problems = []
    if document.get("schema") != ENTRY_SCHEMA:
        problems.append(f"schema: expected {ENTRY_SCHEMA!r}, got {document.get('schema')!r}")
    if document.get("schema_version") != ENTRY_SCHEMA_VERSION:
        problems.append(
            f"schema_version: expected {ENTRY_SCHEMA_VERSION}, got {document.get('schema_version')!r} "
            "(written by another version of emogen-bench?)"
        )
    missing = [name for name in FIELDS if name not in document]
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)} (use null for an empty one)")
    unknown = [name for name in document if name not in FIELDS]
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)}")

    status = document.get("status")
    if status not in STATUSES:
        problems.append(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    protocol = document.get("protocol")
    metric_keys = None
    if isinstance(protocol, str) and protocol in PROTOCOLS:
        metric_keys = PROTOCOLS[protocol].metrics
    else:
        problems.append(f"protocol: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if not _is_text(document.get("method")):
        problems.append(f"method: required text, got {document.get('method')!r}")

    entry_id = document.get("id")
    if not isinstance(entry_id, str) or "/" not in entry_id:
        problems.append(f"id: expected '<protocol>/<slug>', got {entry_id!r}")
    else:
        id_protocol, slug = entry_id.split("/", 1)
        if id_protocol != protocol:
            problems.append(f"id: {entry_id!r} does not start with the entry's protocol {protocol!r}")
        if not SLUG.fullmatch(slug):
            problems.append(f"id: slug {slug!r} must be lower-case letters and digits joined by single hyphens")
        if path is not None:
            path = Path(path)
            expected = f"{path.parent.name}/{path.stem}"
            if entry_id != expected:
                problems.append(f"id: {entry_id!r} does not match the file's place {expected!r} (<protocol>/<slug>)")

    for name in ("paper", "code"):
        if document.get(name) is not None and not _is_url(document.get(name)):
            problems.append(f"{name}: expected null or an http(s) URL, got {document.get(name)!r}")
    if not _is_date(document.get("added")):
        problems.append(f"added: expected a date YYYY-MM-DD, got {document.get('added')!r}")
    if document.get("notes") is not None and not isinstance(document.get("notes"), str):
        problems.append(f"notes: expected null or text, got {document.get('notes')!r}")
    verified_by = document.get("verified_by")
    if status == "verified" and not _is_text(verified_by):
        problems.append("verified_by: required for a verified entry: who re-ran evaluate on the submitted images")
    if status != "verified" and verified_by is not None:
        problems.append(f"verified_by: only verified entries name a verifier (status {status!r})")

    problems += _citation_problems(document.get("citation"), status)
    if status in STATUSES:
        problems += _provenance_problems(document.get("provenance"), status)
    problems += _metrics_problems(document, metric_keys)
    problems += _user_study_problems(document.get("user_study"))
    return problems


def _problem_list(problems: Sequence[str]) -> str:
    return "\n".join(f"  - {problem}" for problem in problems)


def check_entry(document: Any, path: str | Path | None = None) -> Entry:
    """The :class:`Entry` for a valid document; otherwise an :class:`InvalidInputError` listing every problem."""
    problems = validate_entry(document, path)
    if problems:
        where = f"{path}: " if path is not None else ""
        raise InvalidInputError(
            f"{where}not a valid leaderboard entry ({len(problems)} problem(s)):\n{_problem_list(problems)}\n"
            f"Fix the fields named above (the schema is in {DOCS})."
        )
    return Entry(document, Path(path) if path is not None else None)


# --- from a results JSON ------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """``"DB (5 images)"`` -> ``"db-5-images"``: lower-case ASCII letters and digits joined by hyphens."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug:
        raise UsageError(f"cannot make an entry id from {text!r}; pass --id with letters and digits (e.g. my-method)")
    return slug


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def results_problems(results: Mapping[str, Any]) -> list[str]:
    """Why a results document cannot become a leaderboard entry, one line per failed check with its fix."""
    if results.get("schema") != RESULTS_SCHEMA:
        return [f"not an emogen-bench results document (schema {RESULTS_SCHEMA!r} expected)"]
    if results.get("schema_version") != RESULTS_SCHEMA_VERSION:
        return [
            f"results schema version {results.get('schema_version')!r}; this tool reads {RESULTS_SCHEMA_VERSION} "
            "(re-run evaluate with this version of emogen-bench)"
        ]
    problems = []
    protocol = results.get("protocol")
    known = isinstance(protocol, str) and protocol in PROTOCOLS  # a list or object is no key: a problem, not a crash
    if not known:
        problems.append(f"unknown protocol {protocol!r}; entries exist for {', '.join(PROTOCOLS)}")
    elif results.get("protocol_version", 1) != PROTOCOLS[protocol].version:
        problems.append(
            f"protocol {protocol} version {results.get('protocol_version', 1)!r}: its numbers are computed "
            f"differently from the current version {PROTOCOLS[protocol].version} (CHANGELOG.md); re-run evaluate "
            "with this version of emogen-bench"
        )
    if results.get("smoke"):
        problems.append("a smoke run (tiny random models): its numbers mean nothing; run evaluate with real weights")
    raw_artifacts = results.get("artifacts")
    artifacts = _mapping(raw_artifacts)
    unofficial = sorted(name for name, artifact in artifacts.items() if _mapping(artifact).get("official") is not True)
    if not isinstance(raw_artifacts, Mapping) or not artifacts:
        problems.append("artifacts: expected an object naming every weight used (as evaluate writes it)")
    if results.get("official_weights") is not True or unofficial:  # the summary flag and each artifact must agree
        which = f" ({', '.join(unofficial)})" if unofficial else ""
        problems.append(
            f"weights not all official{which}; run evaluate without --weights-override, with the pinned weights"
        )
    run_kind = _mapping(results.get("run")).get("kind")
    if run_kind != "official":
        problems.append(
            f"run kind {run_kind!r}: only the official run of {SUBMISSION.images_per_emotion} images per emotion "
            "is ranked; run evaluate without --per-emotion"
        )
    submission = _mapping(results.get("submission"))
    digest = submission.get("digest")
    if not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
        problems.append(f"submission digest missing or malformed ({digest!r}); use the JSON that evaluate wrote")
    for problem in count_problems(submission.get("counts")):
        problems.append(f"submission counts: {problem}; submit exactly {SUBMISSION.images_per_emotion} per emotion")
    expected_total = SUBMISSION.images_per_emotion * len(EMOTION_NAMES)
    if submission.get("n_images") != expected_total:
        problems.append(f"submission has {submission.get('n_images')!r} images; the protocol needs {expected_total}")
    problems += manifest_problems(submission)
    if known:
        overall = _mapping(_mapping(results.get("metrics")).get("overall"))
        values = {key: _mapping(overall.get(key)).get("value") for key in PROTOCOLS[protocol].metrics}
        missing = [key for key, value in values.items() if not _is_number(value)]
        if missing:
            problems.append(
                f"metric(s) {', '.join(missing)} of protocol {protocol!r} not computed; run evaluate with every "
                "metric (--metrics all) and --reference-stats"
            )
    return problems


UNEDITED = "use the results JSON exactly as evaluate wrote it"


def _shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length (a hostile file may hold a huge value)."""
    limits = reprlib.Repr()
    limits.maxstring = limits.maxother = 100
    return limits.repr(value)


def _manifest_pairs(manifest: Any) -> tuple[list[tuple[str, str]] | None, str | None]:
    """The ``(path, sha256)`` pairs of a results manifest, or ``None`` and why it is not one."""
    if not isinstance(manifest, list):
        return None, f"expected a list of [path, sha256] pairs, got {type(manifest).__name__}"
    bad = [
        index
        for index, item in enumerate(manifest)
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], str)
                and SHA256_HEX.fullmatch(item[1]))
    ]  # fmt: skip
    if bad:
        first = _shown(manifest[bad[0]])
        return None, f"{len(bad)} item(s) are not [path, sha256] pairs, the first at index {bad[0]}: {first}"
    pairs = [(path, sha256) for path, sha256 in manifest]
    twice = sorted(path for path, times in Counter(path for path, _ in pairs).items() if times > 1)
    if twice:
        return None, f"{len(twice)} path(s) listed more than once, e.g. {twice[0]!r}"
    return pairs, None


def manifest_problems(submission: Mapping[str, Any]) -> list[str]:
    """Where a results ``submission`` block contradicts itself; empty when it is consistent.

    ``evaluate`` lists every image it scored in ``manifest`` and derives the rest from that list:
    ``n_images`` is its length, ``counts`` its images per emotion folder, ``digest`` the
    :func:`emogen_bench.hashing.digest_listing` of its pairs.  Editing one without the others (e.g. counts
    raised to 1,000 per emotion over a manifest of 24 images) is refused here.
    """
    pairs, problem = _manifest_pairs(submission.get("manifest"))
    if pairs is None:
        return [f"submission manifest: {problem}; {UNEDITED}"]
    problems = []
    n_images = submission.get("n_images")
    if n_images != len(pairs):
        problems.append(f"submission manifest lists {len(pairs):,} image(s) but n_images says {n_images!r}; {UNEDITED}")
    counts = _mapping(submission.get("counts"))
    listed = Counter(path.split("/", 1)[0] for path, _ in pairs)
    folders = [*EMOTION_NAMES, *sorted(set(listed) - set(EMOTION_NAMES))]
    differ = [f"{e} {counts.get(e, 0)!r} vs {listed[e]}" for e in folders if counts.get(e, 0) != listed[e]]
    if differ:
        problems.append(
            f"submission counts do not match the images in the manifest (counts vs manifest): {', '.join(differ)}; "
            f"{UNEDITED}"
        )
    digest = submission.get("digest")
    recomputed = digest_listing(pairs)
    if isinstance(digest, str) and DIGEST.fullmatch(digest) and digest != recomputed:
        problems.append(
            f"submission digest {digest} is not the digest of its manifest ({recomputed}): the manifest or the "
            f"digest was edited; {UNEDITED}"
        )
    return problems


# --- what the weights registry vouches for ------------------------------------------------------------------------


def _sha256_problem(value: Any, what: str) -> str | None:
    """Why ``value`` is not a real hex sha256 (malformed, or the all-zero placeholder); None when it is one."""
    if not (isinstance(value, str) and SHA256_HEX.fullmatch(value)):
        return f"{what} {_shown(value)} is not a sha256 (64 lower-case hex digits)"
    if value == "0" * 64:
        return f"{what} is all zeros: a placeholder, not the hash of any file"
    return None


def pinned_digest(spec: ArtifactSpec) -> str | None:
    """The ``sha256:`` listing digest the registry pins an artifact's files to (what evaluate records as its
    digest); ``None`` when some file has no full sha256 pin (trust on first use, a prefix) or it is a Hub snapshot."""
    if spec.hf is not None or not spec.pinned:
        return None
    return digest_listing([(f.name, str(f.sha256)) for f in spec.files])


@dataclass(frozen=True)
class RegistryTrust:
    """What the weights registry vouches for in a results document (stored in the entry's provenance).

    ``unpinned_artifacts``: ids whose digest the registry cannot check (a file trusted on first use, a file pinned
    by a sha256 prefix only, an id not in the registry); ``reference_stats_known``: the reference statistics are
    the registry's ``ref-stats-<protocol>``, pinned by a full sha256; ``problems``: digests that are malformed,
    all zeros, or contradict a full pin.
    """

    unpinned_artifacts: tuple[str, ...]
    reference_stats_known: bool
    problems: tuple[str, ...]


def _artifact_trust(artifact_id: str, digest: Any, registry: Registry) -> tuple[bool, str | None]:
    """``(pinned, problem)`` of one artifact's recorded digest; a Hub snapshot is pinned by its commit revision."""
    if not (isinstance(digest, str) and digest.startswith("sha256:")):
        return False, f"artifact {artifact_id}: digest {_shown(digest)} does not start with 'sha256:'; {UNEDITED}"
    if (problem := _sha256_problem(digest.removeprefix("sha256:"), "digest")) is not None:
        return False, f"artifact {artifact_id}: {problem}; {UNEDITED}"
    spec = registry.get(artifact_id) if artifact_id in registry else None
    if spec is None or not spec.pinned:
        return False, None
    expected = pinned_digest(spec)
    if expected is not None and digest != expected:
        return False, (
            f"artifact {artifact_id}: digest {digest} is not the one the weights registry pins ({expected}), yet "
            "the results say every weight is official; re-run evaluate with the pinned weights"
        )
    return True, None


def registry_trust(results: Mapping[str, Any], registry: Registry) -> RegistryTrust:
    """Check the artifact digests and the reference statistics' sha256 of ``results`` against ``registry``."""
    problems, unpinned = [], []
    for artifact_id, artifact in sorted(_mapping(results.get("artifacts")).items()):
        pinned, problem = _artifact_trust(artifact_id, _mapping(artifact).get("digest"), registry)
        if problem is not None:
            problems.append(problem)
        elif not pinned:
            unpinned.append(artifact_id)
    sha256 = _mapping(results.get("reference")).get("sha256")
    problem = _sha256_problem(sha256, "reference statistics sha256")
    if problem is not None:
        problems.append(f"{problem}; {UNEDITED} (evaluate records the sha256 of the --reference-stats file)")
    known = False
    stats_id = reference_stats_id(str(results.get("protocol")))
    if problem is None and stats_id in registry:
        known = any(f.pin == "sha256" and f.sha256 == sha256 for f in registry.get(stats_id).files)
    return RegistryTrust(tuple(unpinned), known, tuple(problems))


def verified_problems(trust: RegistryTrust, protocol: str) -> list[str]:
    """Why results cannot make a ``verified`` entry: a verified score must be reproducible byte for byte."""
    problems = []
    if trust.unpinned_artifacts:
        problems.append(
            f"--status verified: weight(s) {', '.join(trust.unpinned_artifacts)} are not pinned to a full sha256 "
            "in the weights registry (trusted on first use, pinned by a prefix, or unknown), so another run may use "
            "other bytes; add the entry as self-reported, or pin the weights in the registry first"
        )
    if not trust.reference_stats_known:
        problems.append(
            f"--status verified: the reference statistics are not the registry's {reference_stats_id(protocol)} "
            "(pinned by a full sha256); add the entry as self-reported, or evaluate with the published statistics"
        )
    return problems


def _metric_subset(block: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``value``, ``ci95`` and ``n`` of the ``keys`` present in a results block (extras such as ``confusion`` go)."""
    if not isinstance(block, Mapping):
        return {}
    return {
        key: {name: block[key].get(name) for name in ("value", "ci95", "n")}
        for key in keys
        if isinstance(block.get(key), Mapping)
    }


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes of the command line that were not UTF-8
        return False
    return True


def check_entry_options(
    *,
    method: str | None = None,
    paper: str | None = None,
    code: str | None = None,
    verified_by: str | None = None,
    slug: str | None = None,
    notes: str | None = None,
) -> None:
    """Refuse what ``leaderboard add`` was given on its command line before any file is read: text that is not
    UTF-8, and a ``--paper`` or ``--code`` link that is not an http(s) URL; the error names the option."""
    options = {"--method": method, "--paper": paper, "--code": code, "--verified-by": verified_by, "--id": slug,
               "--notes": notes}  # fmt: skip
    for option, value in options.items():
        if isinstance(value, str) and not _is_utf8(value):
            raise UsageError(f"{option} {value!r}: the text is not valid UTF-8; give it as UTF-8 text")
    for option, value in (("--paper", paper), ("--code", code)):
        if value is not None and not _is_url(value):
            raise UsageError(
                f"{option} {value!r}: only http:// and https:// URLs are allowed (e.g. "
                "https://arxiv.org/abs/2401.04608); nothing was written"
            )


def entry_from_results(
    results: Mapping[str, Any],
    *,
    method: str,
    paper: str | None = None,
    code: str | None = None,
    status: str = "self-reported",
    verified_by: str | None = None,
    slug: str | None = None,
    notes: str | None = None,
    added: str | None = None,
    source: str | Path | None = None,
    registry: Registry | None = None,
) -> Entry:
    """The entry of an ``evaluate`` results document; refuses anything but an official run with official weights.

    Every failed check is listed in one :class:`InvalidInputError` (``source``
    names the results file in the message): the run itself, the consistency of its manifest, counts and digest
    (:func:`manifest_problems`), and its digests against ``registry`` (default: the shipped weights registry;
    :func:`registry_trust`), which also decides whether ``verified`` is allowed.  Only ``value``, ``ci95`` and
    ``n`` of the protocol's metrics are kept, overall and per emotion.  What the caller gave (``method``, ``paper``,
    ...) is checked first, by :func:`check_entry_options`: a :class:`UsageError` naming the option.
    """
    check_entry_options(method=method, paper=paper, code=code, verified_by=verified_by, slug=slug, notes=notes)
    if status not in ("self-reported", "verified"):
        raise UsageError(
            f"--status {status!r}: an entry made from results is self-reported or verified; "
            "published rows are written by hand with a citation (see docs/leaderboard.md)"
        )
    if status == "verified" and not _is_text(verified_by):
        raise UsageError("--status verified needs --verified-by NAME: who re-ran evaluate on the submitted images")
    if not _is_text(method):
        raise UsageError("--method needs the method's name")
    slug = slug if slug is not None else slugify(method)
    if not SLUG.fullmatch(slug):
        raise UsageError(f"--id {slug!r}: use lower-case letters and digits joined by single hyphens (e.g. my-method)")
    where = f"{source}: " if source is not None else ""
    problems = results_problems(results)
    trust = RegistryTrust((), False, ())
    if results.get("schema") == RESULTS_SCHEMA and results.get("schema_version") == RESULTS_SCHEMA_VERSION:
        trust = registry_trust(results, registry if registry is not None else load_registry())
        problems += trust.problems
        if status == "verified":
            problems += verified_problems(trust, str(results.get("protocol")))
    if problems:
        raise InvalidInputError(
            f"{where}cannot become a leaderboard entry ({len(problems)} problem(s)):\n{_problem_list(problems)}"
        )
    protocol = results["protocol"]
    keys = PROTOCOLS[protocol].metrics
    submission = results["submission"]
    environment = _mapping(results.get("environment"))
    packages = _mapping(environment.get("packages"))
    per_emotion = _mapping(results["metrics"].get("per_emotion"))
    compact_environment = {
        "python": environment.get("python"),
        "torch": packages.get("torch"),
        "device": environment.get("device"),
    }
    if environment.get("device_name"):
        compact_environment["device_name"] = environment["device_name"]
    document = {
        "schema": ENTRY_SCHEMA,
        "schema_version": ENTRY_SCHEMA_VERSION,
        "id": f"{protocol}/{slug}",
        "method": method.strip(),
        "status": status,
        "protocol": protocol,
        "paper": paper,
        "code": code,
        "added": added or datetime.now(timezone.utc).date().isoformat(),
        "citation": None,
        "verified_by": verified_by if status == "verified" else None,
        "notes": notes,
        "provenance": {
            "benchmark_version": results.get("benchmark_version"),
            "results_schema_version": results["schema_version"],
            "created": results.get("created"),
            "submission_digest": submission["digest"],
            "n_images": submission["n_images"],
            "counts": {emotion: submission["counts"][emotion] for emotion in EMOTION_NAMES},
            "run_kind": results["run"]["kind"],
            "official_weights": results["official_weights"],
            "artifacts": {name: _mapping(a).get("digest") for name, a in _mapping(results.get("artifacts")).items()},
            "reference_sha256": _mapping(results.get("reference")).get("sha256"),
            "seed": results.get("seed"),
            "environment": compact_environment,
            "unpinned_artifacts": list(trust.unpinned_artifacts),
            "reference_stats_known": trust.reference_stats_known,
        },
        "metrics": {
            "overall": _metric_subset(results["metrics"]["overall"], keys),
            "per_emotion": {e: _metric_subset(per_emotion[e], keys) for e in EMOTION_NAMES if e in per_emotion},
        },
        "user_study": None,
    }
    problems = validate_entry(document)
    if problems:  # values the results checks do not look at, e.g. a malformed per-emotion block
        raise InvalidInputError(
            f"{where}its numbers do not make a valid leaderboard entry:\n{_problem_list(problems)}\n"
            "Use the results JSON exactly as evaluate wrote it."
        )
    return Entry(document)


# --- smoke entries of a plan run ----------------------------------------------------------------------------------

#: Schema of an entry made from a smoke run by ``emogen-bench tables regenerate`` (docs/tables.md).  A different
#: schema on purpose: :func:`load_entries`, ``leaderboard add`` and ``leaderboard build`` refuse these files, so a
#: smoke entry can never join the leaderboard.
SMOKE_ENTRY_SCHEMA = "emogen-bench/smoke-entry"
SMOKE_STATUS = "smoke"
SMOKE_NOTE = "SMOKE RUN: tiny random models on synthetic images; the numbers mean nothing and are never ranked."


def validate_smoke_entry(document: Any) -> list[str]:
    """Every problem of a smoke-entry document (see :func:`smoke_entry_from_results`); empty when valid."""
    if not isinstance(document, dict):
        return [f"expected a JSON object (a smoke entry), got {type(document).__name__}"]
    problems = []
    if document.get("schema") != SMOKE_ENTRY_SCHEMA:
        problems.append(f"schema: expected {SMOKE_ENTRY_SCHEMA!r}, got {document.get('schema')!r}")
    if document.get("status") != SMOKE_STATUS:
        problems.append(f"status: expected {SMOKE_STATUS!r}, got {document.get('status')!r}")
    missing = [name for name in FIELDS if name not in document]
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)}")
    protocol = document.get("protocol")
    if protocol not in PROTOCOLS:
        problems.append(f"protocol: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    entry_id = document.get("id")
    slug = entry_id.split("/", 1)[-1] if isinstance(entry_id, str) else ""
    if not (isinstance(entry_id, str) and entry_id.startswith(f"{protocol}/") and SLUG.fullmatch(slug)):
        problems.append(f"id: expected '{protocol}/<slug>', got {entry_id!r}")
    provenance = document.get("provenance")
    if not (isinstance(provenance, dict) and provenance.get("smoke") is True):
        problems.append("provenance: expected an object with smoke: true")
    metrics = document.get("metrics")
    overall = metrics.get("overall") if isinstance(metrics, dict) else None
    if not isinstance(overall, dict):
        problems.append("metrics.overall: expected an object {metric: {value, ci95, n}}")
    else:
        keys = PROTOCOLS[protocol].metrics if protocol in PROTOCOLS else tuple(overall)
        for key, metric in overall.items():
            if key not in keys:
                problems.append(f"metrics.overall.{key}: not a metric of protocol {protocol!r}")
            else:
                problems.extend(_metric_value_problems(f"metrics.overall.{key}", key, metric))
    return problems


def smoke_entry_from_results(
    results: Mapping[str, Any],
    *,
    method: str,
    slug: str,
    notes: str | None = None,
    added: str | None = None,
    source: str | Path | None = None,
) -> Entry:
    """The entry of a *smoke* ``evaluate`` results document, for the tables of a smoke plan run only.

    :func:`entry_from_results` (and ``leaderboard add``) refuse smoke runs, and rightly; a smoke plan
    still needs its rows as entries to render its tables.  This explicit path writes them under
    :data:`SMOKE_ENTRY_SCHEMA` with status ``smoke``: whatever values were computed (a reduced run may
    miss some), the run's provenance marked ``smoke: true``, never loadable as a leaderboard entry.
    """
    where = f"{source}: " if source is not None else ""
    if results.get("schema") != RESULTS_SCHEMA or results.get("smoke") is not True:
        raise UsageError(
            f"{where}not the results of a smoke run; a real run becomes an entry through entry_from_results "
            "(emogen-bench leaderboard add)"
        )
    if not SLUG.fullmatch(slug):
        raise UsageError(f"smoke entry id {slug!r}: use lower-case letters and digits joined by single hyphens")
    protocol = results.get("protocol")
    keys = PROTOCOLS[protocol].metrics if protocol in PROTOCOLS else ()
    submission = _mapping(results.get("submission"))
    metrics = _mapping(results.get("metrics"))
    per_emotion = _mapping(metrics.get("per_emotion"))
    document = {
        "schema": SMOKE_ENTRY_SCHEMA,
        "schema_version": ENTRY_SCHEMA_VERSION,
        "id": f"{protocol}/{slug}",
        "method": method.strip(),
        "status": SMOKE_STATUS,
        "protocol": protocol,
        "paper": None,
        "code": None,
        "added": added or datetime.now(timezone.utc).date().isoformat(),
        "citation": None,
        "verified_by": None,
        "notes": SMOKE_NOTE + (f" {notes}" if notes else ""),
        "provenance": {
            "smoke": True,
            "benchmark_version": results.get("benchmark_version"),
            "results_schema_version": results.get("schema_version"),
            "created": results.get("created"),
            "submission_digest": submission.get("digest"),
            "n_images": submission.get("n_images"),
            "counts": dict(_mapping(submission.get("counts"))),
            "run_kind": _mapping(results.get("run")).get("kind"),
            "official_weights": results.get("official_weights") is True,
            "seed": results.get("seed"),
            "not_computed": sorted(_mapping(results.get("not_computed"))),
        },
        "metrics": {
            "overall": _metric_subset(metrics.get("overall"), keys),
            "per_emotion": {e: _metric_subset(per_emotion[e], keys) for e in EMOTION_NAMES if e in per_emotion},
        },
        "user_study": None,
    }
    problems = validate_smoke_entry(document)
    if problems:
        raise InvalidInputError(f"{where}cannot become a smoke entry:\n{_problem_list(problems)}")
    return Entry(document)


# --- files --------------------------------------------------------------------------------------------------------


def entry_path(directory: str | Path, entry_id: str) -> Path:
    """Where the entry ``<protocol>/<slug>`` lives under ``directory``."""
    protocol, slug = entry_id.split("/", 1)
    return Path(directory) / protocol / f"{slug}.json"


def entry_json(document: Mapping[str, Any]) -> str:
    """The stored text of an entry: indented, fields in schema order, UTF-8, one trailing newline."""
    ordered = {name: document[name] for name in FIELDS if name in document}
    return json.dumps(ordered, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def link_problem(path: Path, root: Path) -> str | None:
    """Why ``path`` may not be followed: a symbolic link (the file's or a folder's on its way) that leads out of
    ``root``, or a link loop; None for a path that stays inside ``root``."""
    try:
        real = path.resolve()
        inside = real.is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a loop of symbolic links
        return "is a loop of symbolic links; refusing to follow it"
    if inside:
        return None
    return f"is a symbolic link to {real}, outside the entries folder {root}; refusing to follow it (copy the file in)"


def _reason(error: BenchError, path: Path) -> str:
    """The message of a safe_read error without its leading ``<path>: `` (the caller names the file itself)."""
    return str(error).removeprefix(f"{path}: ")


def read_entry_document(path: Path, root: Path | None = None, error: type[BenchError] = InvalidInputError) -> Any:
    """The JSON document of an entry file, read through :mod:`emogen_bench.safe_read` (a regular file only, bounded,
    strict); with ``root``, a symbolic link out of that folder is refused before anything is opened."""
    if root is not None and (problem := link_problem(path, root)) is not None:
        raise error(f"{path}: {problem}")
    return read_json(path, "leaderboard entry", error)


def read_entry(path: str | Path, root: str | Path | None = None) -> Entry:
    """The valid entry stored at ``path``; :class:`InvalidInputError` naming the file and its problems otherwise."""
    path = Path(path)
    return check_entry(read_entry_document(path, Path(root) if root is not None else None), path)


def load_entries(directory: str | Path) -> list[Entry]:
    """Every entry under ``directory/<protocol>/*.json``, sorted by id.

    Any bad file (unreadable, invalid, not a regular file, a symbolic link out of
    ``directory``, or whose id does not match its place) makes one
    :class:`InvalidInputError` naming each file and its problems.
    """
    directory = Path(directory)
    kind = file_kind(directory)
    if kind == "missing":
        raise UsageError(f"entries folder {directory} does not exist; pass --entries DIR (e.g. leaderboard/entries)")
    if kind != "a folder":
        raise UsageError(f"entries folder {directory} is {kind or 'a file'}, not a folder; pass --entries DIR")
    entries, failures = [], []
    for stray in sorted(directory.glob("*.json")):
        failures.append(f"{stray}:\n  - an entry belongs in a protocol folder: <entries>/<protocol>/<slug>.json")
    for path in sorted(directory.glob("*/*.json")):
        try:
            document = read_entry_document(path, directory)
        except InvalidInputError as error:
            failures.append(f"{path}:\n  - cannot be read as JSON ({_reason(error, path)})")
            continue
        problems = validate_entry(document, path)
        if problems:
            failures.append(f"{path}:\n{_problem_list(problems)}")
        else:
            entries.append(Entry(document, path))
    if failures:
        raise InvalidInputError(
            f"{len(failures)} bad leaderboard entry file(s) under {directory}:\n"
            + "\n".join(failures)
            + f"\nFix or remove them (the schema is in {DOCS})."
        )
    return sorted(entries, key=lambda entry: entry.id)


@dataclass(frozen=True)
class StoreOutcome:
    """What :func:`store_entry` did: ``written`` (new file), ``replaced`` or ``unchanged``."""

    path: Path
    action: str


def _without_added(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "added"}


def store_entry(entry: Entry, directory: str | Path, *, replace: bool = False) -> StoreOutcome:
    """Write ``entry`` to ``directory/<protocol>/<slug>.json`` atomically.

    An existing file with the same entry (ignoring the ``added`` date) is left
    as it is; one with a different entry is refused unless ``replace``, and the
    file is then left byte for byte as it was.
    """
    path = entry_path(directory, entry.id)
    if (problem := link_problem(path, Path(directory))) is not None:
        raise UsageError(f"{path}: {problem}; nothing was written")
    if path.exists() or path.is_symlink():
        kind = file_kind(path)
        if kind not in (None, "missing"):
            raise UsageError(f"{path} is {kind}, not an entry file; nothing was written. Move it away")
        unreadable = "not a JSON object"
        try:
            existing = read_entry_document(path, error=UsageError)
        except UsageError as error:
            existing, unreadable = None, _reason(error, path)
        if isinstance(existing, dict) and _without_added(existing) == _without_added(entry.document):
            return StoreOutcome(path, "unchanged")
        if not replace:
            differing = (
                sorted(name for name in FIELDS if name != "added" and existing.get(name) != entry.document.get(name))
                if isinstance(existing, dict)
                else [f"(the file is not readable JSON: {unreadable})"]
            )
            raise UsageError(
                f"{path} already holds a different entry for {entry.id} (differs in: {', '.join(differing)}); "
                "nothing was written. Pass --replace to replace it, or --id SLUG to store it under another id"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    action = "replaced" if path.exists() else "written"
    write_atomic(path, entry_json(entry.document), overwrite=replace)
    return StoreOutcome(path, action)
