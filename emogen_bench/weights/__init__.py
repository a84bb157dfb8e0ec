"""Pinned weights: the registry, the verified local cache, and loading an artifact by id.

``load_artifact("emo-head-clip")`` resolves the artifact through the store (the
cache or an override, hashes checked, never a download) and hands its local
path to the loader registered for that id in :data:`emogen_bench.models.LOADERS`.
The :class:`ResolvedArtifact` travels with the loaded object so every result can
cite the exact bytes it was computed with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogen_bench.errors import UsageError
from emogen_bench.weights.override import Overrides, load_overrides
from emogen_bench.weights.registry import ArtifactSpec, Registry, load_registry
from emogen_bench.weights.store import ArtifactStatus, ResolvedArtifact, WeightStore


@dataclass(frozen=True)
class LoadedArtifact:
    """An artifact turned into a usable object, with the provenance of its bytes."""

    value: Any
    resolved: ResolvedArtifact


def open_store(weights_override: str | Path | None = None, *, offline: bool | None = None) -> WeightStore:
    """The default store, with the user's override file applied (``--weights-override``)."""
    registry = load_registry()
    return WeightStore(offline=offline, overrides=load_overrides(weights_override, registry), registry=registry)


def load_artifact(artifact_id: str, store: WeightStore | None = None) -> LoadedArtifact:
    """Resolve ``artifact_id`` (checked, never downloaded) and load it with its registered loader."""
    from emogen_bench.models import LOADERS

    store = store if store is not None else open_store()
    resolved = store.resolve(artifact_id)
    loader = LOADERS.get(artifact_id)
    if loader is None:
        raise UsageError(
            f"artifact {artifact_id!r} has no benchmark loader (it is loaded by the generators, e.g. with "
            f"diffusers); its local path is {resolved.path}"
        )
    return LoadedArtifact(value=loader(resolved.path), resolved=resolved)


__all__ = [
    "ArtifactSpec",
    "ArtifactStatus",
    "LoadedArtifact",
    "Overrides",
    "Registry",
    "ResolvedArtifact",
    "WeightStore",
    "load_artifact",
    "load_overrides",
    "load_registry",
    "open_store",
]
