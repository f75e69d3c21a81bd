"""The model-loading errors: every one's `str()` is a sentence for the user (a leaf module: imports only torch's
standard library peers)."""

from __future__ import annotations

from pathlib import Path


class ModelLoadError(RuntimeError):
    """A model could not be loaded; `str(e)` is a message for the user."""


class WeightsUnavailableError(ModelLoadError):
    """Pretrained weights are neither cached nor downloadable (offline), or their package is not installed."""

    def __init__(self, name: str, filename: str, cache_dir: Path | str, fetch: str, where: str, reason: str = ""):
        """Args:
        name: the registry name; filename: the weights file; cache_dir: where it was looked for;
        fetch: the one command that gets it (run on a machine with network); where: "torch cache (TORCH_HOME)" …;
        reason: why a download failed (an exception's type name), if one was tried.
        """
        self.name, self.filename, self.cache_dir = name, filename, Path(cache_dir)
        super().__init__(
            f"Weights for '{name}' are not available: {filename} is not in the {where} ({cache_dir})"
            + (f" and could not be downloaded ({reason})" if reason else "")
            + f". {fetch}"
        )


class CheckpointMismatchError(ModelLoadError):
    """A state_dict does not fit the chosen architecture; lists the offending keys."""

    def __init__(self, arch: str, missing: list[str], unexpected: list[str], shapes: list[str]):
        self.missing, self.unexpected, self.shapes = missing, unexpected, shapes
        parts = [f"The checkpoint does not match the '{arch}' architecture."]
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}.")
        super().__init__(" ".join(parts))


class ModelOutputError(ModelLoadError):
    """A network's output is not class logits (nor a tuple / mapping holding them); `str(e)` says what it returned."""


class TorchScriptRefusedError(ModelLoadError):
    """A TorchScript upload on a server that does not allow them (`$SPADE_ALLOW_TORCHSCRIPT` is not "1")."""

    def __init__(self) -> None:
        super().__init__(
            "This is a TorchScript file. TorchScript files are programs: loading one runs the code inside it on "
            "this server, so they are turned off here. Upload the weights instead "
            "(`torch.save(model.state_dict(), 'weights.pt')`) and pick the architecture, or, on a server only you "
            "use, start the app with `SPADE_ALLOW_TORCHSCRIPT=1`."
        )
