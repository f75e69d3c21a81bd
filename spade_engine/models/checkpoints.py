"""Reading users' weight files safely: PyTorch checkpoints, `.safetensors` files and TorchScript archives.

One job: bytes in, a plain `{parameter name: float32 tensor}` mapping (or a runnable TorchScript module) out,
with every refusal worded for a user. What real checkpoints look like, and what is done about it:

- **Training-script wrappers.** Lightning `.ckpt` (`{"state_dict": {"model.<key>": ...}, "optimizer_states",
  "hyper_parameters", ...}`), torchvision's reference scripts (`{"model": ..., "optimizer": ..., "args":
  argparse.Namespace}`), `{"model_state_dict": ...}`, timm's `{"state_dict": ..., "state_dict_ema": ...}`:
  the weights mapping is found by key (`CONTAINER_KEYS`), every non-tensor entry (epochs, optimizer state,
  hyper-parameters) is dropped.
- **Key prefixes.** `torch.compile` adds `_orig_mod.` (anywhere in a key), DDP `module.`, a LightningModule the
  attribute that holds the network (`model.`, `net.`, ...): `align_state_dict` removes the prefix under which
  the architecture's keys are found, whatever it is.
- **Pickled Python objects.** Files are unpickled with `torch.load(weights_only=True)` only (never
  `weights_only=False`, which runs whatever code the file names). `argparse.Namespace` and `pathlib` paths are
  allowed as themselves (`SAFE_GLOBALS`); any other class or function the file names is replaced by an inert
  placeholder (`_Placeholder`, through `torch.serialization.safe_globals([(placeholder, "module.Name")])`), so
  no code from the file ever runs, and the placeholders are dropped with the other non-tensor entries.
- **`.safetensors`** (Hugging Face and timm's default format; `u64` header length, JSON header, raw data) is
  recognised by its header and read with the `safetensors` package (the optional `models` extra).
- **TorchScript** archives are programs (their code runs when the model runs), so they are refused unless the
  server sets `SPADE_ALLOW_TORCHSCRIPT=1` (`TorchScriptRefusedError`, whose message says why and what to do).
- **Precision.** Half, bfloat16 and double tensors are cast to float32: the engine and every saliency method
  run in float32.

Sources: torch.serialization docs ("weights_only", `safe_globals`, `get_unsafe_globals_in_checkpoint`);
safetensors format, https://github.com/huggingface/safetensors#format; Lightning checkpoint layout,
https://lightning.ai/docs/pytorch/stable/common/checkpointing_intermediate.html.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import pickletools
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from spade_engine.errors import ModelLoadError, TorchScriptRefusedError

# Wrapper keys that hold the weights in training scripts' checkpoints, most specific first.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params")
# Classes a checkpoint may hold that are safe to build as themselves (plain attribute bags and paths).
SAFE_GLOBALS = (argparse.Namespace, pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath)
# Modules whose functions a weights file never needs: a file naming one tries to run code when it is opened.
CODE_MODULES = ("os", "sys", "posix", "nt", "subprocess", "builtins", "shutil", "socket", "importlib", "runpy", "pty",
                "webbrowser", "pickle", "marshal", "ctypes", "code", "types", "operator", "functools", "multiprocessing",
                "asyncio", "urllib", "http", "requests", "platform", "signal", "tempfile", "io", "codecs")  # fmt: skip
COMPILE_PREFIX = "_orig_mod."  # torch.compile's OptimizedModule
SAVE_HINT = "Save the weights with `torch.save(model.state_dict(), 'weights.pt')`, or, where the server allows it, the whole model as TorchScript."
TORCHSCRIPT_ENV = "SPADE_ALLOW_TORCHSCRIPT"  # "1": TorchScript uploads are loaded and run (trusted users only)


def torchscript_allowed() -> bool:
    """Whether the server allows TorchScript uploads (`$SPADE_ALLOW_TORCHSCRIPT` is "1"); read at every call."""
    return os.environ.get(TORCHSCRIPT_ENV, "").strip() == "1"


class _Placeholder:
    """Stands in for any class or function a checkpoint names that is not a weight: building or calling it does
    nothing, so unpickling runs no code from the file."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> _Placeholder:
        return _Placeholder()

    def __setstate__(self, state) -> None:
        self.__dict__["_state"] = state  # kept as data: a pickled module's parameters are read from it


def _module_tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict of a whole pickled `nn.Module` (`torch.save(model, path)`) read without building it: the
    placeholder's kept `__dict__` holds `_parameters`, `_buffers` and `_modules`, walked recursively. Empty
    when `obj` is not a pickled module."""
    state = getattr(obj, "_state", None) if isinstance(obj, _Placeholder) else None
    if not isinstance(state, dict) or not isinstance(state.get("_parameters"), Mapping):
        return {}
    skip = state.get("_non_persistent_buffers_set") or set()
    out = {prefix + k: v for k, v in state["_parameters"].items() if isinstance(v, torch.Tensor)}
    out |= {
        prefix + k: v for k, v in state.get("_buffers", {}).items() if isinstance(v, torch.Tensor) and k not in skip
    }
    for name, child in (state.get("_modules") or {}).items():
        out |= _module_tensors(child, f"{prefix}{name}.")
    return out


def fold_pruning_masks(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `torch.nn.utils.prune` state_dict saved before `prune.remove`: every `<name>_orig` with its
    `<name>_mask` becomes `<name> = <name>_orig * <name>_mask`, the tensor the pruned forward computes with.

    Args:
        state: parameter name -> tensor.

    Returns:
        The mapping with each pair folded (other keys unchanged).
    """
    out = dict(state)
    for key in [k for k in state if k.endswith("_orig") and k[: -len("_orig")] + "_mask" in state]:
        base = key[: -len("_orig")]
        out[base] = out.pop(key) * out.pop(base + "_mask")
    return out


# ------------------------------------------------------------------------------------------- formats


def is_torchscript(data: bytes) -> bool:
    """Whether `data` is a TorchScript archive (`torch.jit.save`): a zip holding `code/` and `constants.pkl`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def is_safetensors(data: bytes) -> bool:
    """Whether `data` starts like a `.safetensors` file: a little-endian u64 header length, then a JSON object."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


# --------------------------------------------------------------------------------------- state dicts


def read_state_dict(source: bytes | str | Path) -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file, as float32 (floating) tensors keyed by parameter name.

    Args:
        source: the file's bytes or its path: a PyTorch checkpoint (`torch.save`, any wrapper of
            `CONTAINER_KEYS`) or a `.safetensors` file.

    Returns:
        `{name: tensor}` on the CPU, non-tensor entries dropped, `_orig_mod.` removed from every key; other
        prefixes are left for `align_state_dict`.

    Raises:
        ModelLoadError: not a weights file, no tensors in it, unsafe content, or `.safetensors` without the
            `safetensors` package; the message says what to do.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    obj = _read_safetensors(data) if is_safetensors(data) else _read_pickle(data)
    state = fold_pruning_masks(_find_weights(obj))
    if not state:
        raise ModelLoadError(_no_weights_message(obj))
    return {k.replace(COMPILE_PREFIX, ""): _as_float32(v) for k, v in state.items()}


def _no_weights_message(obj: object) -> str:
    """Why a readable checkpoint gave no weights, naming what it holds."""
    if isinstance(obj, _Placeholder):
        return (
            f"The file holds a pickled Python object ({type(obj).__name__}) with no "
            f"weight tensors in it, not a model's weights. {SAVE_HINT}"
        )
    what = f"a {type(obj).__name__}" + (
        f" with the keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, Mapping) else ""
    )
    return f"The checkpoint holds no weight tensors (a mapping of parameter names to tensors); it holds {what}. {SAVE_HINT}"


def _read_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load
    except ImportError:
        raise ModelLoadError(
            "This is a .safetensors file; reading it needs the `safetensors` package: "
            "`pip install safetensors` (or the project's `models` extra)."
        ) from None
    try:
        return load(data)
    except Exception:
        raise ModelLoadError(
            "This .safetensors file is damaged or incomplete (its header or data cannot be read)."
        ) from None


def _read_pickle(data: bytes) -> object:
    if not zipfile.is_zipfile(io.BytesIO(data)) and data[:2] not in (
        b"\x80\x02",
        b"\x80\x03",
        b"\x80\x04",
        b"\x80\x05",
    ):
        raise ModelLoadError(
            "This file is not a PyTorch checkpoint (.pt, .pth, .ckpt, .bin), a .safetensors file or a TorchScript "
            f"file. {SAVE_HINT}"
        )
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return _torch_load(data)
    except Exception:
        pass  # names classes or functions beyond SAFE_GLOBALS (or is damaged): retry with placeholders
    names = _unsafe_globals(data)
    blocked = [n for n in names if n.split(".")[0] in CODE_MODULES]
    if blocked:
        raise ModelLoadError(
            f"The checkpoint asks to call {', '.join(blocked[:3])} when it is opened, which a weights file never "
            f"needs: it was refused for safety. {SAVE_HINT}"
        )
    placeholders = [(type(name, (_Placeholder,), {}), name) for name in names]
    try:
        with torch.serialization.safe_globals([*SAFE_GLOBALS, *placeholders]):
            return _torch_load(data)
    except Exception:
        if any(n.startswith("torch.nn.modules.") for n in names):
            raise ModelLoadError(_whole_model_message(names[0])) from None
        raise ModelLoadError(
            f"The checkpoint could not be read: the file is damaged, incomplete or not a PyTorch checkpoint. {SAVE_HINT}"
        ) from None


def _whole_model_message(cls: str) -> str:
    return (
        f"This file holds a whole pickled model (a {cls} object saved with `torch.save(model, path)` in PyTorch's "
        "legacy format), not its weights; reading it would run code from the file, so it is refused. Convert it "
        "where you trust the file: `model = torch.load('file.pt', weights_only=False)`, then "
        "`torch.save(model.state_dict(), 'weights.pt')`, and load weights.pt with the model's architecture."
    )


def _torch_load(data: bytes) -> object:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _unsafe_globals(data: bytes) -> list[str]:
    """The classes and functions (`module.Name`) a checkpoint names beyond what weights-only loading allows:
    torch's own list for zip checkpoints; for legacy (pre-1.6) files and plain pickles, the pickle's GLOBAL
    opcodes, read with `pickletools` (which runs nothing)."""
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
        return _pickle_globals(data)
    except Exception:
        raise ModelLoadError(
            f"The checkpoint could not be read: the file is damaged, incomplete or not a PyTorch checkpoint. {SAVE_HINT}"
        ) from None


def _pickle_globals(data: bytes) -> list[str]:
    """`module.Name` of every GLOBAL / STACK_GLOBAL in the consecutive pickles of a legacy file, minus those
    weights-only loading allows."""
    from torch._weights_only_unpickler import _get_allowed_globals

    names, stream, strings = [], io.BytesIO(data), []
    while stream.tell() < len(data):
        try:
            ops = list(pickletools.genops(stream))
        except Exception:  # the raw tensor data after the pickles
            break
        for op, arg, _ in ops:
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
            elif op.name == "GLOBAL":
                names.append(arg.replace(" ", ".").replace("__builtin__.", "builtins."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    allowed = set(_get_allowed_globals())
    return [n for n in dict.fromkeys(names) if n not in allowed]


def _find_weights(obj: object) -> dict[str, torch.Tensor]:
    """The tensors of the first mapping that holds any: `obj` itself or one of its `CONTAINER_KEYS` (nested);
    a whole pickled model (`torch.save(model)`, also inside a wrapper) gives its state_dict (`_module_tensors`)."""
    if isinstance(obj, _Placeholder):
        return _module_tensors(obj)
    if not isinstance(obj, Mapping):
        return {}
    for key in CONTAINER_KEYS:
        inner = _find_weights(obj.get(key)) if key in obj else {}
        if inner:
            return inner
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t


def align_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename `state`'s keys to the architecture's by removing the prefix under which most of them are found.

    A LightningModule saves its network under `model.` (or whatever attribute holds it), DDP under `module.`,
    the app's own `Classifier` under `net.`; any such prefix, nested or not, is found by trying every dotted
    prefix of `state`'s keys and keeping the one that names most of `expected`'s keys. Keys outside that
    prefix (a loss module's buffers, an EMA copy under another name, `normalize.mean`) are dropped.

    Args:
        state: parameter name -> tensor, as read from the file.
        expected: the architecture's own `state_dict()` (only its keys are used).

    Returns:
        The renamed mapping (unchanged when no prefix matches better than none).
    """
    keys = set(state)
    prefixes = {""} | {k[: i + 1] for k in keys for i, c in enumerate(k) if c == "."}
    best = max(sorted(prefixes, key=len), key=lambda p: sum(p + k in keys for k in expected))
    if best == "":
        return dict(state)
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


# -------------------------------------------------------------------------------------------- TorchScript


def load_torchscript(data: bytes) -> nn.Module:
    """A TorchScript archive as a float32 module in eval mode on the CPU (half-precision files are cast).

    Raises:
        TorchScriptRefusedError: the server does not allow TorchScript (`$SPADE_ALLOW_TORCHSCRIPT` is not "1").
        ModelLoadError: the archive cannot be loaded (damaged, or written by a newer PyTorch).
    """
    if not torchscript_allowed():
        raise TorchScriptRefusedError()
    try:
        net = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception:
        raise ModelLoadError(
            "The TorchScript file could not be loaded: it is damaged, or was saved by a newer PyTorch than "
            f"the one running here ({torch.__version__.split('+')[0]})."
        ) from None
    return net.float().eval()
