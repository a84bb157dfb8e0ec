"""``weights pin``: every mirror fetched, agreement required, the registry edited in place; ``pinned`` in results."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_weights_download import NO_WAIT, FileServer, file_server  # noqa: F401 - the loopback server fixture

from emogen_bench.cli import main
from emogen_bench.errors import ExitCode
from emogen_bench.evaluate import _artifacts
from emogen_bench.weights.registry import Registry, load_registry
from emogen_bench.weights.store import WeightStore

PAYLOAD = b"the one true network " * 2000
IMPOSTOR = b"a different network " * 2000

REGISTRY = """# The test registry: comments and layout must survive a pin.
schema = 1

[artifacts."net.v1"]
description = "two mirrors"   # trailing comment
used_by = ["fid"]
license = "none"
loader = "torchscript"

[[artifacts."net.v1".files]]
name = "net.pt"
urls = [
    "BASE/a/net.pt",  # primary
    "BASE/b/net.pt",
]
pin = "unpinned"
approx_size = 50_000

[artifacts.other]
description = "left alone"
used_by = ["fid"]
license = "none"
loader = "torchscript"

[[artifacts.other.files]]
name = "other.pt"
urls = ["BASE/a/other.pt"]
pin = "unpinned"
approx_size = 50_000
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry_file(tmp_path: Path, file_server: FileServer) -> Path:  # noqa: F811
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY.replace("BASE", file_server.base_url))
    return path


def test_pin_fetches_every_mirror_and_edits_only_the_pin_lines(
    file_server: FileServer, registry_file: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    file_server.files.update({"/a/net.pt": PAYLOAD, "/b/net.pt": PAYLOAD})
    before = registry_file.read_text()
    assert main(["weights", "pin", "net.v1", "--registry", str(registry_file), "--quiet"]) == ExitCode.OK
    assert file_server.hits("/a/net.pt") == 1 and file_server.hits("/b/net.pt") == 1
    assert f"sha256 {sha(PAYLOAD)}, {len(PAYLOAD)} bytes, identical from 2 URL(s)" in capsys.readouterr().out
    after = registry_file.read_text()
    expected = before.replace(
        'pin = "unpinned"\napprox_size = 50_000\n',
        f'pin = "sha256"\nsha256 = "{sha(PAYLOAD)}"\nsize = {len(PAYLOAD)}\n',
        1,
    )
    assert after == expected  # comments, the multi-line urls and the other artifact are untouched
    spec = Registry.from_toml(registry_file).get("net.v1")
    assert spec.pinned and spec.files[0].sha256 == sha(PAYLOAD) and spec.files[0].size == len(PAYLOAD)
    assert not Registry.from_toml(registry_file).get("other").pinned


def test_disagreeing_mirrors_exit_3_naming_both_and_leave_the_registry_alone(
    file_server: FileServer, registry_file: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    file_server.files.update({"/a/net.pt": PAYLOAD, "/b/net.pt": IMPOSTOR})
    before = registry_file.read_bytes()
    assert main(["weights", "pin", "net.v1", "--registry", str(registry_file), "--quiet"]) == ExitCode.WEIGHTS
    err = capsys.readouterr().err
    base = file_server.base_url
    assert "disagree" in err and f"{base}/a/net.pt" in err and f"{base}/b/net.pt" in err
    assert sha(PAYLOAD) in err and sha(IMPOSTOR) in err
    assert registry_file.read_bytes() == before


def test_a_failing_mirror_pins_nothing(
    file_server: FileServer, registry_file: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    file_server.files["/a/net.pt"] = PAYLOAD  # the second mirror answers 404
    before = registry_file.read_bytes()
    assert main(["weights", "pin", "net.v1", "--registry", str(registry_file), "--quiet"]) == ExitCode.WEIGHTS
    assert f"{file_server.base_url}/b/net.pt: HTTP 404" in capsys.readouterr().err
    assert registry_file.read_bytes() == before


def test_a_hub_snapshot_is_not_pinned_by_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    registry = tmp_path / "registry.toml"
    packaged = Path(__file__).resolve().parents[1] / "emogen_bench" / "weights" / "registry.toml"
    registry.write_bytes(packaged.read_bytes())
    assert main(["weights", "pin", "clip-vit-l14", "--registry", str(registry)]) == ExitCode.USAGE
    assert "revision" in capsys.readouterr().err
    assert registry.read_bytes() == packaged.read_bytes()


def test_places365_is_fetched_over_https_first() -> None:
    [file] = load_registry().get("resnet50-places365").files
    assert file.urls[0].startswith("https://")


# --- "pinned" in every result's artifacts ---------------------------------------------------------------


def test_results_say_whether_each_artifact_is_pinned(
    file_server: FileServer, registry_file: Path, tmp_path: Path  # noqa: F811
) -> None:
    file_server.files.update({"/a/net.pt": PAYLOAD, "/b/net.pt": PAYLOAD, "/a/other.pt": IMPOSTOR})
    store = WeightStore(tmp_path / "home", registry=Registry.from_toml(registry_file), retry=NO_WAIT)
    store.fetch(["net.v1", "other"], show_progress=False)  # both trusted on first use
    digests = {a: (store.resolve(a).digest, False) for a in ("net.v1", "other")}
    unpinned = _artifacts(digests, store, None)
    assert unpinned["net.v1"]["pinned"] is False and unpinned["net.v1"]["official"] is True

    assert main(["weights", "pin", "net.v1", "--registry", str(registry_file), "--quiet"]) == ExitCode.OK
    store = WeightStore(tmp_path / "home", registry=Registry.from_toml(registry_file))
    records = _artifacts(digests, store, None)
    assert records["net.v1"]["pinned"] is True and records["other"]["pinned"] is False
    assert _artifacts({"x": ("smoke:0", True)}, store, None)["x"]["pinned"] is False
