"""The feature cache: per-image model outputs on disk, keyed by image content and extractor identity.

A feature is stored under the extractor's :attr:`ExtractorInfo.cache_key`
(name, outputs, preprocessing version, weights digests, model batch) and the
image's sha256, so a changed image, changed weights or changed preprocessing
can never hit a stale entry.  Layout under ``root`` (default
``bench_home()/"features"``)::

    v1/items/<extractor name>/<cache_key>/<sha[:2]>/<sha>.npz   one image's outputs
    v1/summaries/<key[:2]>/<key>.json                           small JSON results (LPIPS per emotion)

One uncompressed ``.npz`` per image and extractor: 8,000 images x 4 extractors
is 32,000 files of a few KiB, read back in about a second.  Every entry is
written to a temporary name and renamed into place, so readers see a whole
entry or none.  Entries are not fsynced: an entry damaged by a power cut is
simply recomputed, because any entry that cannot be read, or whose arrays do
not have the shapes the extractor declares, counts as absent (never a crash).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emogen_bench.features.base import ExtractorInfo
from emogen_bench.hashing import SHA256_HEX
from emogen_bench.paths import bench_home

#: Bumped when the on-disk layout changes; older layouts are left alone (``clear`` removes them all).
LAYOUT = "v1"
_LAYOUT_DIR = re.compile(r"v[0-9]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def default_cache_root() -> Path:
    """``bench_home()/"features"``: where features live unless a root is given."""
    return bench_home() / "features"


def _write_replace(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path`` and rename it into place (no fsync: see module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(payload)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def encode_outputs(outputs: Mapping[str, np.ndarray]) -> bytes:
    """One image's outputs as the bytes of an uncompressed ``.npz`` (dtypes kept)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in outputs.items()})
    return buffer.getvalue()


def decode_outputs(data: bytes | Path, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
    """The arrays of one ``.npz`` entry, or ``None`` if it is damaged or not shaped as ``expected``."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(source, allow_pickle=False) as archive:
            if set(archive.files) != set(expected):
                return None
            outputs = {name: archive[name] for name in expected}
    except Exception:  # noqa: BLE001 - a damaged entry can fail in many ways (zip, header, CRC); it is absent
        return None
    for name, value in outputs.items():  # a member that is not an .npy array is read back as bytes
        if not isinstance(value, np.ndarray) or value.shape != tuple(expected[name]):
            return None
    return outputs


class FeatureCache:
    """Per-image features and small per-set summaries on disk; ``enabled=False`` makes every call a no-op.

    Keys are validated (sha256: 64 lower-case hex digits; names: plain file
    names), so no key can reach outside ``root``.  Extractors that are not
    ``cacheable`` are never stored.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.enabled = enabled

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, enabled={self.enabled})"

    @property
    def _base(self) -> Path:
        return self.root / LAYOUT

    def item_path(self, info: ExtractorInfo, sha256: str) -> Path:
        """Where the outputs of ``info``'s extractor for the image ``sha256`` are stored."""
        if not _SAFE_NAME.fullmatch(info.name):
            raise ValueError(f"extractor name {info.name!r} cannot be used as a cache folder name")
        if not SHA256_HEX.fullmatch(sha256):
            raise ValueError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
        return self._base / "items" / info.name / info.cache_key / sha256[:2] / f"{sha256}.npz"

    def summary_path(self, key: str) -> Path:
        """Where the summary stored under ``key`` lives."""
        if not _SAFE_NAME.fullmatch(key):
            raise ValueError(f"summary key {key!r} must be a plain name (letters, digits, '.', '_', '-')")
        return self._base / "summaries" / key[:2] / f"{key}.json"

    def get_many(self, info: ExtractorInfo, sha256s: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """The cached outputs of every image in ``sha256s`` that has a readable entry (others are absent)."""
        if not self.enabled or not info.cacheable:
            return {}
        found: dict[str, dict[str, np.ndarray]] = {}
        for sha in dict.fromkeys(sha256s):
            path = self.item_path(info, sha)
            if not path.is_file():
                continue
            outputs = decode_outputs(path, info.outputs)
            if outputs is not None:
                found[sha] = outputs
        return found

    def put_many(self, info: ExtractorInfo, outputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Store ``{sha256: {output name: per-image array}}``; each entry is written atomically."""
        if not self.enabled or not info.cacheable:
            return
        for sha, arrays in outputs.items():
            _write_replace(self.item_path(info, sha), encode_outputs(arrays))

    def get_summary(self, key: str) -> Any | None:
        """The JSON document stored under ``key``, or ``None`` (absent, damaged, or cache disabled)."""
        if not self.enabled:
            return None
        path = self.summary_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None

    def put_summary(self, key: str, document: Any) -> None:
        """Store a JSON-able ``document`` under ``key`` (NaN allowed: a jackknife may leave too few images)."""
        if not self.enabled:
            return
        _write_replace(self.summary_path(key), json.dumps(document, allow_nan=True).encode("utf-8"))

    def _layouts(self) -> list[Path]:
        """The layout folders (``v1``, ...) under ``root``: the only things the cache owns there."""
        if not self.root.is_dir():
            return []
        return sorted(child for child in self.root.iterdir() if child.is_dir() and _LAYOUT_DIR.fullmatch(child.name))

    def size(self) -> int:
        """Bytes used by cached files (every layout version under ``root``)."""
        total = 0
        for layout in self._layouts():
            for folder, _, files in os.walk(layout):
                for name in files:
                    try:
                        total += os.stat(os.path.join(folder, name)).st_size
                    except OSError:
                        continue
        return total

    def clear(self) -> int:
        """Delete every cached entry (only the cache's own layout folders under ``root``); returns bytes freed."""
        freed = self.size()
        for layout in self._layouts():
            shutil.rmtree(layout)
        return freed
