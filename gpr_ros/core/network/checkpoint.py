"""Checkpoint format, atomic saving and validated loading.

A checkpoint is a ``torch.save`` dict of plain types and tensors only (loadable with
``weights_only=True``):

- ``format_version``: :data:`FORMAT_VERSION`;
- ``network_config``: :meth:`NetworkConfig.to_dict` (the architecture travels with the
  weights);
- ``model_state``: the model's ``state_dict``;
- ``epoch``: the number of finished epochs;
- ``metrics``: the last epoch's metrics (floats);
- optional ``optimizer_state``, ``scheduler_state``, ``train_config``, ``rng_state`` and
  ``best_val_loss`` for resuming a run.
"""

from __future__ import annotations

from collections.abc import Mapping
import io
import os
from pathlib import Path
import pickle
import tempfile
from typing import Any
import zipfile

import torch

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import CheckpointError
from gpr_ros.core.network.model import GPRNet

__all__ = [
    "FORMAT_VERSION",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]

#: Version of the checkpoint layout.
FORMAT_VERSION = 1
_REQUIRED = ("format_version", "network_config", "model_state", "epoch")


def save_checkpoint(
    path: Path | str,
    model: torch.nn.Module,
    config: NetworkConfig,
    epoch: int,
    metrics: Mapping[str, float] | None = None,
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename).

    :param path: destination.
    :param model: the model (a DDP wrapper is unwrapped).
    :param config: its architecture.
    :param epoch: finished epochs.
    :param metrics: metrics to store.
    :param extra: further entries (``optimizer_state``, ``scheduler_state``, ...).
    :return: the path.
    """
    path = Path(path)
    module = getattr(model, "module", model)
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "network_config": config.to_dict(),
        "model_state": module.state_dict(),
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint dict (``weights_only=True``).

    :param path: the file.
    :param map_location: device of the tensors.
    :return: the dict.
    :raises CheckpointError: if the file is missing, unreadable (truncated or corrupt), or not
        a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a .pt file)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError, KeyError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(data).__name__}, expected a dict with keys "
            f"{list(_REQUIRED)}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing key(s) {missing}")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {data['format_version']!r}, expected "
            f"{FORMAT_VERSION}"
        )
    return data


def load_model(path: Path | str, map_location: str | torch.device = "cpu") -> GPRNet:
    """Rebuild a :class:`GPRNet` from a checkpoint, in eval mode.

    :param path: the file.
    :param map_location: device to load onto.
    :return: the model.
    :raises CheckpointError: if the file is missing or corrupt, its config is invalid, or its
        state dict does not match the config's architecture.
    """
    data = load_checkpoint(path, map_location)
    try:
        config = NetworkConfig.from_dict(data["network_config"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} has an invalid network_config: {err}") from None
    model = GPRNet(config)
    state = data["model_state"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path}: model_state is not a state dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path}: model_state does not match its network_config "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, shape mismatches "
            f"{shapes[:5]}); expected the state dict of GPRNet(network_config)"
        )
    model.load_state_dict(state)
    model.to(map_location)
    model.eval()
    return model
