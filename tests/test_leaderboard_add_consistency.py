"""``leaderboard add`` checks that a results file agrees with itself and with the weights registry (issue 13).

The forged file of the issue (counts edited to 1,000 per emotion over a manifest of 24 real images, an all-zero
reference sha256) is refused with every reason; a consistent file is stored with ``unpinned_artifacts`` and
``reference_stats_known``; ``verified`` is refused while a weight or the reference statistics are unpinned.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from leaderboard_fixtures import results_document

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode, InvalidInputError
from emogen_bench.hashing import digest_listing, sha256_bytes
from emogen_bench.submission import ValidationReport, validate_submission, write_example_submission
from emogen_bench.task import EMOTION_NAMES
from emogen_bench.weights import ResolvedArtifact, load_registry
from emogen_bench.weights.registry import Registry, parse_registry
from emogen_bench.weights.store import ResolvedFile
from leaderboard.entries import entry_from_results, load_entries, validate_entry

Doc = dict[str, Any]
COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"
REFERENCE_SHA = "e" * 64
HEAD_SHA = "80f72314e31e10a1e40e6e38687dd81a03e8e3ab2de03832d37e7a280485c998"
ZERO_SHA = "0" * 64


def _digest(artifact_id: str, files: dict[str, str]) -> str:
    """The digest evaluate records for an artifact: :attr:`ResolvedArtifact.digest` of its checked files."""
    resolved = tuple(ResolvedFile(name, Path(name), sha, ("sha256",)) for name, sha in files.items())
    return ResolvedArtifact(artifact_id, Path("."), resolved, "sha256", True, False, "cache", "torchscript").digest


def _registry(*, reference: str | None = REFERENCE_SHA) -> Registry:
    """A registry parsed from TOML data: a fully pinned head, an unpinned (trust on first use) Inception, a Hub
    snapshot and, unless ``reference`` is None, the eicg-v3 reference statistics pinned to ``reference``."""

    def artifact(loader: str, name: str, sha256: str | None) -> Doc:
        pin = {"pin": "sha256", "sha256": sha256} if sha256 is not None else {"pin": "unpinned"}
        file = {"name": name, "urls": [f"https://example.org/{name}"], **pin}
        return {"description": "d", "used_by": ["fid"], "license": "l", "loader": loader, "files": [file]}

    artifacts = {
        "emo-head-clip": artifact("torch-checkpoint", "head.pth", HEAD_SHA),
        "inception-fid": artifact("torchscript", "inception.pt", None),
        "clip-vit-l14": {
            "description": "d", "used_by": ["emo_a"], "license": "l", "loader": "hf-snapshot",
            "hf": {"repo_id": "openai/clip-vit-large-patch14", "revision": "3" * 40, "allow_patterns": ["*.json"],
                   "required_files": ["config.json"]},
        },
    }  # fmt: skip
    if reference is not None:
        artifacts["ref-stats-eicg-v3"] = artifact("tensor-files", "ref.npz", reference)
    return parse_registry({"schema": 1, "artifacts": artifacts}, source="test registry")


def _artifacts(**digests: str) -> Doc:
    return {name: {"digest": digest, "official": True, "overridden": False} for name, digest in digests.items()}


PINNED_ARTIFACTS = {
    "emo-head-clip": _digest("emo-head-clip", {"head.pth": HEAD_SHA}),
    "clip-vit-l14": _digest("clip-vit-l14", {"config.json": "1" * 64, "model.safetensors": "2" * 64}),
}


def shipped_artifacts() -> dict[str, str]:
    """Digests the shipped registry vouches for: the EmoGen head (pinned by a full sha256) and the CLIP snapshot
    (pinned by its revision)."""
    head = load_registry().get("emo-head-clip").files[0]
    return {
        "emo-head-clip": _digest("emo-head-clip", {head.name: str(head.sha256)}),
        "clip-vit-l14": PINNED_ARTIFACTS["clip-vit-l14"],
    }


def _manifest(per_emotion: int = 1000) -> list[list[str]]:
    """``[path, sha256]`` pairs as evaluate writes them, sorted by path."""
    return [
        [f"{emotion}/{index:04d}.png", sha256_bytes(f"{emotion}/{index}".encode())]
        for emotion in EMOTION_NAMES
        for index in range(per_emotion)
    ]


def consistent_results(artifacts: Doc | None = None) -> Doc:
    """An official eicg-v3 results document whose manifest, n_images, counts and digest agree."""
    results = results_document()
    manifest = _manifest()
    results["submission"].update(
        manifest=manifest,
        n_images=len(manifest),
        counts={emotion: 1000 for emotion in EMOTION_NAMES},
        digest=digest_listing([(path, sha) for path, sha in manifest]),
    )
    results["artifacts"] = _artifacts(**(artifacts if artifacts is not None else PINNED_ARTIFACTS))
    results["reference"]["sha256"] = REFERENCE_SHA
    return results


@pytest.fixture(scope="module")
def real_submission(tmp_path_factory: pytest.TempPathFactory) -> ValidationReport:
    """A real submission of 24 images (3 per emotion), validated as evaluate validates it."""
    folder = tmp_path_factory.mktemp("real") / "submission"
    write_example_submission(folder, per_emotion=3, size=8)
    return validate_submission(folder, per_emotion=3, check_images=False, show_progress=False)


def forged_results(report: ValidationReport) -> Doc:
    """The issue's forgery: the submission block of a real 24-image run with its counts edited to 1,000 per emotion
    (and n_images to match), the manifest left at 24 entries, and an all-zero reference sha256."""
    results = consistent_results(shipped_artifacts())
    results["submission"] = {
        "path": str(report.path),
        "digest": report.digest,
        "n_images": 8000,
        "counts": {emotion: 1000 for emotion in EMOTION_NAMES},
        "metadata_sha256": report.metadata_sha256,
        "metadata": None,
        "manifest": [[entry.path, entry.sha256] for entry in report.manifest],
    }
    results["reference"]["sha256"] = ZERO_SHA
    return results


def _write(path: Path, document: Doc) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _refusal(results: Doc, **options: Any) -> str:
    with pytest.raises(InvalidInputError) as caught:
        entry_from_results(results, method="M", source="run.json", **options)
    message = str(caught.value)
    assert message.startswith("run.json: cannot become a leaderboard entry (")
    return message


# --- the forged file of the issue ---------------------------------------------------------------------------------


def test_the_forged_file_of_the_issue_is_refused_with_each_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_submission: ValidationReport
) -> None:
    assert len(real_submission.manifest) == 24
    results = _write(tmp_path / "forged.json", forged_results(real_submission))
    entries = tmp_path / "entries"
    code = main(["leaderboard", "add", str(results), "--method", "Forged", "--entries", str(entries)])
    assert code == ExitCode.INVALID
    error = capsys.readouterr().err
    assert error.startswith(f"emogen-bench: error: {results}: cannot become a leaderboard entry (3 problem(s))")
    assert "submission manifest lists 24 image(s) but n_images says 8000" in error
    recount = ", ".join(f"{emotion} 1000 vs 3" for emotion in EMOTION_NAMES)
    assert f"submission counts do not match the images in the manifest (counts vs manifest): {recount}" in error
    assert "reference statistics sha256 is all zeros: a placeholder, not the hash of any file" in error
    assert "is not the digest of its manifest" not in error  # the real 24-image digest recomputes exactly
    assert not entries.exists()


def test_a_real_manifest_recomputes_to_the_digest_validation_gave(real_submission: ValidationReport) -> None:
    results = forged_results(real_submission)
    results["submission"]["digest"] = "sha256:" + "ab" * 32
    message = _refusal(results, registry=_registry())
    recomputed = real_submission.digest
    assert f"submission digest sha256:{'ab' * 32} is not the digest of its manifest ({recomputed})" in message


def _truncate(results: Doc) -> None:
    """Keep 3 images per emotion in the manifest and recompute its digest, as a careful forger would."""
    submission = results["submission"]
    submission["manifest"] = [pair for pair in submission["manifest"] if int(pair[0][-8:-4]) < 3]
    submission["digest"] = digest_listing([(path, sha) for path, sha in submission["manifest"]])


def _move_to_awe(results: Doc) -> None:
    """Ten amusement images listed under awe, the digest recomputed; counts and n_images left as they were."""
    submission = results["submission"]
    for pair in submission["manifest"][:10]:
        pair[0] = "awe/moved-" + pair[0].replace("/", "-")
    submission["manifest"].sort()
    submission["digest"] = digest_listing([(path, sha) for path, sha in submission["manifest"]])


def _set(dotted: str, value: Any) -> Callable[[Doc], None]:
    def change(results: Doc) -> None:
        *parents, last = dotted.split(".")
        target = results
        for name in parents:
            target = target[name]
        target[last] = value

    return change


def _edit_manifest(change: Callable[[list[Any]], None]) -> Callable[[Doc], None]:
    return lambda results: change(results["submission"]["manifest"])


INCONSISTENT: dict[str, tuple[Callable[[Doc], None], str]] = {
    "counts of 1,000 over a manifest of 24": (
        _truncate,
        "submission manifest lists 24 image(s) but n_images says 8000",
    ),
    "images moved between emotion folders": (
        _move_to_awe,
        "submission counts do not match the images in the manifest (counts vs manifest): amusement 1000 vs 990, "
        "awe 1000 vs 1010",
    ),
    "digest not of the manifest": (
        _set("submission.digest", "sha256:" + "ab" * 32),
        "submission digest sha256:" + "ab" * 32 + " is not the digest of its manifest",
    ),
    "one image's bytes changed": (
        _edit_manifest(lambda manifest: manifest[0].__setitem__(1, "f" * 64)),
        "is not the digest of its manifest",
    ),
    "no manifest": (
        _set("submission.manifest", None),
        "submission manifest: expected a list of [path, sha256] pairs, got NoneType",
    ),
    "a manifest item that is not a pair": (
        _edit_manifest(lambda manifest: manifest.__setitem__(5, ["amusement/0005.png"])),
        "submission manifest: 1 item(s) are not [path, sha256] pairs, the first at index 5",
    ),
    "a path listed twice": (
        _edit_manifest(lambda manifest: manifest.__setitem__(1, list(manifest[0]))),
        "submission manifest: 1 path(s) listed more than once, e.g. 'amusement/0000.png'",
    ),
    "all-zero reference sha256": (
        _set("reference.sha256", ZERO_SHA),
        "reference statistics sha256 is all zeros: a placeholder, not the hash of any file",
    ),
    "malformed reference sha256": (
        _set("reference.sha256", "E" * 64),
        f"reference statistics sha256 '{'E' * 64}' is not a sha256 (64 lower-case hex digits)",
    ),
    "no reference": (_set("reference", None), "reference statistics sha256 None is not a sha256"),
    "all-zero artifact digest": (
        _set("artifacts.emo-head-clip.digest", "sha256:" + ZERO_SHA),
        "artifact emo-head-clip: digest is all zeros",
    ),
    "artifact digest without sha256:": (
        _set("artifacts.emo-head-clip.digest", HEAD_SHA),
        f"artifact emo-head-clip: digest '{HEAD_SHA}' does not start with 'sha256:'",
    ),
    "a pinned artifact with other bytes": (
        _set("artifacts.emo-head-clip.digest", _digest("emo-head-clip", {"head.pth": "9" * 64})),
        "artifact emo-head-clip: digest sha256:",
    ),
}


@pytest.mark.parametrize("case", list(INCONSISTENT))
def test_an_inconsistent_results_file_is_refused_with_the_reason(case: str) -> None:
    change, reason = INCONSISTENT[case]
    results = consistent_results()
    change(results)
    message = _refusal(results, registry=_registry())
    assert reason in message
    if case == "a pinned artifact with other bytes":
        assert f"is not the one the weights registry pins ({PINNED_ARTIFACTS['emo-head-clip']})" in message


# --- consistent files ---------------------------------------------------------------------------------------------


def test_a_consistent_file_with_pinned_weights_and_known_statistics_can_be_verified() -> None:
    entry = entry_from_results(consistent_results(), method="M", status="verified", verified_by="ci",
                               registry=_registry())  # fmt: skip
    provenance = entry.document["provenance"]
    assert (provenance["unpinned_artifacts"], provenance["reference_stats_known"]) == ([], True)
    assert entry.status == "verified" and validate_entry(dict(entry.document)) == []


def test_unpinned_weights_and_unknown_statistics_are_stored_marked_when_self_reported() -> None:
    artifacts = {**PINNED_ARTIFACTS, "inception-fid": "sha256:" + "d" * 64, "my-own-net": "sha256:" + "a" * 64}
    entry = entry_from_results(consistent_results(artifacts), method="M", registry=_registry(reference=None))
    provenance = entry.document["provenance"]
    assert provenance["unpinned_artifacts"] == ["inception-fid", "my-own-net"]
    assert provenance["reference_stats_known"] is False
    assert provenance["reference_sha256"] == REFERENCE_SHA
    assert validate_entry(dict(entry.document)) == []


def test_statistics_other_than_the_registry_pin_are_unknown_not_refused() -> None:
    entry = entry_from_results(consistent_results(), method="M", registry=_registry(reference="7" * 64))
    assert entry.document["provenance"]["reference_stats_known"] is False


def test_verified_is_refused_for_an_unpinned_artifact() -> None:
    results = consistent_results({**PINNED_ARTIFACTS, "inception-fid": "sha256:" + "d" * 64})
    message = _refusal(results, status="verified", verified_by="ci", registry=_registry())
    assert "(1 problem(s))" in message
    assert "--status verified: weight(s) inception-fid are not pinned to a full sha256 in the weights" in message
    assert "add the entry as self-reported" in message


def test_verified_is_refused_for_unknown_reference_statistics() -> None:
    message = _refusal(consistent_results(), status="verified", verified_by="ci", registry=_registry(reference=None))
    assert "(1 problem(s))" in message
    assert "--status verified: the reference statistics are not the registry's ref-stats-eicg-v3" in message


def test_add_stores_a_consistent_file_with_the_shipped_registry(tmp_path: Path) -> None:
    artifacts = {**shipped_artifacts(), "custom-net": "sha256:" + "a" * 64}
    results = _write(tmp_path / "results.json", consistent_results(artifacts))
    entries = tmp_path / "entries"
    assert main(["leaderboard", "add", str(results), "--method", "M", "--entries", str(entries)]) == ExitCode.OK
    provenance = json.loads((entries / "eicg-v3" / "m.json").read_text(encoding="utf-8"))["provenance"]
    assert provenance["unpinned_artifacts"] == ["custom-net"]
    assert provenance["reference_stats_known"] is False


def test_add_verified_of_an_unpinned_artifact_exits_1_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _write(tmp_path / "results.json", consistent_results({"custom-net": "sha256:" + "a" * 64}))
    entries = tmp_path / "entries"
    code = main(["leaderboard", "add", str(results), "--method", "M", "--status", "verified", "--verified-by", "ci",
                 "--entries", str(entries)])  # fmt: skip
    assert code == ExitCode.INVALID
    error = capsys.readouterr().err
    assert error.startswith(f"emogen-bench: error: {results}: cannot become a leaderboard entry")
    assert "--status verified: weight(s) custom-net are not pinned" in error
    assert not entries.exists()


# --- stored entries -----------------------------------------------------------------------------------------------


def test_committed_entries_without_the_new_fields_still_load() -> None:
    assert load_entries(COMMITTED)


def _stored(status: str, **fields: Any) -> Doc:
    document = copy.deepcopy(entry_from_results(consistent_results(), method="M", registry=_registry()).document)
    document["provenance"].update(fields)
    if status == "verified":
        document.update(status="verified", verified_by="ci")
    return document


@pytest.mark.parametrize(
    ("status", "fields", "problem"),
    [
        ("verified", {"unpinned_artifacts": ["inception-fid"]}, "a verified entry cannot use unpinned weights"),
        ("verified", {"reference_stats_known": False}, "a verified entry needs the registry's reference statistics"),
        ("self-reported", {"unpinned_artifacts": "inception-fid"}, "expected a list of artifact ids"),
        ("self-reported", {"reference_stats_known": "yes"}, "expected true or false, got 'yes'"),
    ],
)
def test_a_stored_entry_with_contradicting_trust_fields_is_refused(status: str, fields: Doc, problem: str) -> None:
    assert validate_entry(_stored(status)) == []
    assert any(problem in line for line in validate_entry(_stored(status, **fields)))
