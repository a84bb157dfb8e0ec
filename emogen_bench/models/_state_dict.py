"""Reading weight files and comparing state dicts strictly, with readable differences.

Every loader goes through here so that a wrong file always fails the same way: a
:class:`~emogen_bench.errors.WeightsError` naming the file, what was expected and
what was found (the first few missing and unexpected keys, and shape mismatches).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from emogen_bench.errors import WeightsError

#: How many keys of each kind an error message lists before "... and N more".
SHOWN_KEYS = 5

#: Buffers that old checkpoints lack (BatchNorm's counter only matters in training), with the value the module
#: gives them when it is built (``BatchNorm`` starts its counter at 0): a module built on the meta device
#: (:func:`build_on_meta`) has no value of its own to keep.
OPTIONAL_DEFAULTS: dict[str, int] = {".num_batches_tracked": 0}
OPTIONAL_SUFFIXES: tuple[str, ...] = tuple(OPTIONAL_DEFAULTS)

ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: Containers that training scripts wrap state dicts in.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")


@dataclass(frozen=True)
class KeyDiff:
    """How a found state dict differs from the expected one."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    #: ``(key, expected shape, found shape)`` for keys present in both.
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = SHOWN_KEYS) -> str:
        """One line per kind of problem, each listing at most ``limit`` keys."""
        lines = []
        if self.missing:
            lines.append(f"missing keys ({len(self.missing)}): {_first(self.missing, limit)}")
        if self.unexpected:
            lines.append(f"unexpected keys ({len(self.unexpected)}): {_first(self.unexpected, limit)}")
        if self.mismatched:
            shown = [f"{key} expected {list(want)} found {list(got)}" for key, want, got in self.mismatched]
            lines.append(f"shape mismatches ({len(self.mismatched)}): {_first(shown, limit)}")
        return "; ".join(lines)


def _first(items: Iterable[str], limit: int) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def _is_optional(key: str) -> bool:
    return key.endswith(OPTIONAL_SUFFIXES)


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, Any],
    *,
    optional: Callable[[str], bool] = _is_optional,
) -> KeyDiff:
    """Compare keys and shapes; keys for which ``optional`` is true may be missing."""
    missing = tuple(k for k in expected if k not in found and not optional(k))
    unexpected = tuple(k for k in found if k not in expected)
    mismatched = []
    for key, want in expected.items():
        got = found.get(key)
        if got is None:
            continue
        got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else None
        if got_shape != tuple(want.shape):
            mismatched.append((key, tuple(want.shape), got_shape if got_shape is not None else (type(got).__name__,)))
    return KeyDiff(missing, unexpected, tuple(mismatched))


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, Any], *, path: Path, what: str
) -> None:
    """Raise :class:`WeightsError` unless ``found`` has exactly the keys and shapes of ``expected``."""
    diff = compare_state_dicts(expected, found)
    if not diff.ok:
        raise WeightsError(
            f"{path}: not a {what} checkpoint: {diff.describe()}. "
            "Check that the file is the right artifact (compare its sha256 with the registry) and fetch it again."
        )


def load_torch_file(path: str | Path, *, what: str) -> Any:
    """``torch.load`` on CPU with ``weights_only=True``; every failure becomes a :class:`WeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} file not found; fetch it with the `emogen-bench weights` command.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(str(exc))
        if refused is None:  # not a pickle torch can parse: a damaged file
            raise WeightsError(
                f"{path}: cannot read the {what} file with torch.load (not a valid PyTorch checkpoint); "
                "the file is truncated or damaged. Delete it and fetch it again."
            ) from exc
        raise WeightsError(
            f"{path}: the {what} file holds Python objects beyond tensors and plain values ({refused}); "
            "torch.load(weights_only=True) refuses to unpickle them because that could run arbitrary code. "
            "If you trust the file, extract its tensors once in a separate environment "
            "(torch.load(..., weights_only=False), then torch.save(the state dict)) "
            "and point the benchmark at that copy."
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, zipfile errors... for a damaged file
        raise WeightsError(
            f"{path}: cannot read the {what} file with torch.load ({type(exc).__name__}: {_first_line(exc)}); "
            "the file is truncated or not a PyTorch checkpoint. Delete it and fetch it again."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _refused_global(message: str) -> str | None:
    """The line of torch's weights-only refusal that names what it refused, or None for other failures.

    torch words it "Unsupported global: GLOBAL x.y" or "Trying to load unsupported GLOBAL posix.system" (a
    blocked module), by version.  "Unsupported operand" is left out: random bytes give it too.
    """
    for line in message.splitlines():
        if "unsupported global" in line.lower():
            return line.strip().split(" was not an allowed global")[0]
    return None


def unwrap_state_dict(obj: Any, *, path: Path, what: str, wrappers: tuple[str, ...] = WRAPPER_KEYS) -> dict[str, Any]:
    """The state dict itself: ``obj`` or ``obj[w]`` for the first wrapper key ``w`` it holds."""
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path}: expected a {what} state dict (a mapping of names to tensors), found {type(obj).__name__}."
        )
    for key in wrappers:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            obj = inner
            break
    if not all(isinstance(k, str) for k in obj):
        raise WeightsError(f"{path}: the {what} state dict has non-string keys; it is not a PyTorch state dict.")
    return dict(obj)


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove ``prefix`` from every key when ALL keys carry it (``nn.DataParallel`` writes ``module.``)."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def build_on_meta(factory: Callable[[], ModuleT]) -> ModuleT:
    """``factory()`` built on the meta device: every parameter and buffer has its shape and dtype but no memory.

    The random initialisation a constructor runs (kaiming_normal_ over a ResNet-50's 25 M parameters) is skipped,
    since :func:`load_strict` replaces every tensor with the file's anyway.
    """
    with torch.device("meta"):
        return factory()


def _optional_default(key: str, own: torch.Tensor) -> torch.Tensor:
    """The value of an optional buffer the file lacks: the module's own, or its construction value when the
    module was built on the meta device."""
    if not own.is_meta:
        return own
    value = next(default for suffix, default in OPTIONAL_DEFAULTS.items() if key.endswith(suffix))
    return torch.full(own.shape, value, dtype=own.dtype)


def _like(found: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``found`` as the module's tensor would hold it after a copy: the module's dtype, contiguous, on the CPU."""
    return found.to(device="cpu", dtype=own.dtype).contiguous()


def meta_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` that are still on the meta device (hold no values)."""
    named = chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))
    return [name for name, tensor in named if tensor.is_meta]


def load_strict(module: ModuleT, state_dict: Mapping[str, Any], *, path: Path, what: str) -> ModuleT:
    """Check keys and shapes against ``module``, load, and return it in eval mode without gradients.

    ``module`` may be built on the meta device (:func:`build_on_meta`): the file's tensors are assigned to it (the
    module's dtype, contiguous, on the CPU: what a copy into a CPU module gives), not copied into random weights.
    Optional buffers missing from the file keep the module's own values (their construction values for a meta
    module).
    """
    expected = module.state_dict()
    check_state_dict(expected, state_dict, path=path, what=what)
    complete = {
        key: _like(state_dict[key], own) if key in state_dict else _optional_default(key, own)
        for key, own in expected.items()
    }
    module.load_state_dict(complete, strict=True, assign=True)
    left = meta_tensors(module)
    if left:  # a buffer outside the state dict (persistent=False) cannot come from any file
        raise RuntimeError(f"{type(module).__name__} built on the meta device keeps tensors without values: {left}")
    module.eval()
    module.requires_grad_(False)
    return module
