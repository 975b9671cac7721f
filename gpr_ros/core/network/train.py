"""Training loop: single process, or DDP under ``torchrun`` (gloo on CPU, nccl on CUDA).

Schedule (Sec. VI-A): SGD with momentum, LR 0.02, divided by 10 when the validation loss
plateaus (:class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`); ``optimizer="adam"`` is
offered with the same plateau rule (use a smaller LR, e.g. 1e-3). ``lr_drop_epochs`` replaces
the rule by a fixed step schedule (:class:`~torch.optim.lr_scheduler.MultiStepLR`); a run is
resumed only with the schedule it started with.

Determinism and resume. The model is initialised from ``seed``; data items are seeded by
(seed, epoch, scene) and the shuffling by (seed, epoch) (:class:`DistributedSampler`, also in
a single process); the proposal and crop sampling of a step is seeded by
(seed, epoch, step, rank). ``last.pt`` stores model, optimizer, scheduler, epoch, best
validation loss and the torch RNG state, so a resumed run continues exactly like an
uninterrupted one.

Outputs in ``out_dir`` (rank 0 only): ``last.pt`` and ``best.pt`` (see :mod:`.checkpoint`),
``metrics.jsonl`` (one JSON object per epoch), ``metrics.png`` (losses and validation
metrics per epoch) and ``train_config.json``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from gpr_ros.core.dataset.storage import DatasetReader
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.network.checkpoint import load_checkpoint, save_checkpoint
from gpr_ros.core.network.config import (
    LOSS_KEYS,
    TRAIN_PARTS,
    TRAINING_ONLY_KEYS,
    TrainConfig,
    same_network,
)
from gpr_ros.core.network.data import SceneDataset, batch_to, collate
from gpr_ros.core.network.errors import CheckpointError, NetworkError
from gpr_ros.core.network.inference import flushed_denormals
from gpr_ros.core.network.losses import compute_losses
from gpr_ros.core.network.model import GPRNet

__all__ = ["TrainResult", "plot_metrics", "split_scenes", "train", "trainable_parameters"]

LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    :ivar metrics: the last epoch's metrics (the stored ones when nothing was left to train).
    :ivar model: the trained network of this rank (unwrapped from DDP).
    :ivar epoch: finished epochs.
    """

    metrics: dict[str, float]
    model: GPRNet
    epoch: int


def split_scenes(
    indices: list[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split scene indices into training and validation sets (seeded).

    :param indices: all scene indices.
    :param val_fraction: held-out fraction; at least one scene when there are two or more.
    :param seed: seed of the split.
    :return: ``(train, val)``; with a single scene both hold it.
    """
    if len(indices) < 2:
        return list(indices), list(indices)
    order = np.random.default_rng([seed, 7]).permutation(len(indices))
    n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * len(indices))))
    n_val = min(n_val, len(indices) - 1)
    val = sorted(indices[i] for i in order[:n_val])
    train = sorted(indices[i] for i in order[n_val:])
    return train, val if val else train


def _step_seed(seed: int, epoch: int, step: int, rank: int, training: bool) -> int:
    entropy = [seed, epoch, step, rank, int(training)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _progress(iterable: Iterable[Any], enabled: bool, **kwargs: Any) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def _reduce(sums: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return sums
    keys = sorted(sums)
    tensor = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def _batch_metrics(out: dict[str, Any], batch: dict[str, Any], model: GPRNet) -> dict[str, float]:
    """Counts for precision/recall of the contact segmentation and the width accuracy."""
    pred = out["seg_logits"] > 0
    target = batch["seg_target"] > 0.5
    reg_mask = batch["reg_mask"]
    widths = model.decode_bins(out["reg"].detach())["width"]
    spec = model.config.bins.spec("width")
    bin_idx = batch["bin_target"][..., 3].to(widths.dtype)
    true_w = spec.start + (bin_idx + 0.5 + batch["res_target"][..., 3]) * spec.size
    props = out["proposals"]
    conf_ok = ((out["stage2"]["conf"] > 0) == (props.confidence_target > 0.5)) & props.valid
    return {
        "tp": float((pred & target).sum()),
        "pred_pos": float(pred.sum()),
        "true_pos": float(target.sum()),
        "width_ok": float((((widths - true_w).abs() < 0.005) & reg_mask).sum()),
        "reg_pos": float(reg_mask.sum()),
        "conf_ok": float(conf_ok.sum()),
        "props": float(props.valid.sum()),
        "props_pos": float((props.label * props.valid).sum()),
    }


def plot_metrics(metrics_path: Path, png_path: Path) -> None:
    """Plot the per-epoch losses and validation metrics of a ``metrics.jsonl``.

    :param metrics_path: the JSONL file.
    :param png_path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("train_total", "val_total", "val_seg", "val_bin_cls", "val_s2_conf"):
        axes[0].plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    for key in ("val_seg_precision", "val_seg_recall", "val_width_acc_5mm", "val_s2_conf_acc",
                "val_proposal_pos_rate"):
        axes[1].plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)


def _run_epoch(
    model: torch.nn.Module,
    core: GPRNet,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer | None,
    config: TrainConfig,
    epoch: int,
    rank: int,
    world: int,
    device: torch.device,
    progress: bool,
    desc: str,
) -> dict[str, float]:
    training = optimizer is not None
    model.train(training)
    sums: dict[str, float] = defaultdict(float)
    limit = config.max_steps_per_epoch if training else 0
    with torch.set_grad_enabled(training):
        for step, cpu_batch in enumerate(_progress(loader, progress and rank == 0, desc=desc,
                                                   leave=False, total=len(loader))):
            if limit and step >= limit:
                break
            batch = batch_to(cpu_batch, device)
            # Validation uses the same seeds every epoch, so its losses are comparable.
            seed = _step_seed(config.seed, epoch if training else 0, step, rank, training)
            out = model(batch["points"], batch["groups"], batch["gt"], seed)
            losses = compute_losses(out, batch, core.config)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
            sums["steps"] += 1.0
            for key in (*LOSS_KEYS, "total"):
                sums[key] += float(losses[key].detach())
            if not training:
                for key, value in _batch_metrics(out, batch, core).items():
                    sums[key] += value
    totals = _reduce(dict(sums), world)
    steps = max(totals.get("steps", 0.0), 1.0)
    prefix = "train_" if training else "val_"
    result = {f"{prefix}{k}": totals.get(k, 0.0) / steps for k in (*LOSS_KEYS, "total")}
    if not training:
        def ratio(a: str, b: str) -> float:
            return totals.get(a, 0.0) / totals[b] if totals.get(b, 0.0) > 0 else 0.0

        result.update({
            "val_seg_precision": ratio("tp", "pred_pos"),
            "val_seg_recall": ratio("tp", "true_pos"),
            "val_width_acc_5mm": ratio("width_ok", "reg_pos"),
            "val_s2_conf_acc": ratio("conf_ok", "props"),
            "val_proposal_pos_rate": ratio("props_pos", "props"),
        })
    return result


def _saved_lr_drop_epochs(state: dict[str, Any]) -> tuple[int, ...]:
    """Return the ``lr_drop_epochs`` a resumable checkpoint was trained with.

    :param state: a checkpoint saved by :func:`train` (before the step schedule existed its
        ``train_config`` has no such key: the plateau rule).
    :return: the epochs, empty for the plateau rule.
    :raises CheckpointError: when the stored train config cannot be read.
    """
    try:
        saved = json.loads(state.get("train_config", "{}"))
        return tuple(int(e) for e in saved.get("lr_drop_epochs", ()))
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"the checkpoint's train_config is unreadable: {err}") from None


def trainable_parameters(model: GPRNet, parts: str) -> list[torch.nn.Parameter]:
    """Select what learns; freeze the rest (``requires_grad = False``).

    :param model: the network.
    :param parts: ``"all"`` or ``"stage2"`` (see :attr:`TrainConfig.train_parts`).
    :return: the parameters to optimise.
    :raises ConfigError: on an unknown ``parts``.
    """
    if parts not in TRAIN_PARTS:
        raise ConfigError(f"train_parts must be one of {TRAIN_PARTS}, got {parts!r}")
    learn = (model.s2_encoder, model.s2_head) if parts == "stage2" else (model,)
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = [p for module in learn for p in module.parameters()]
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def train(
    config: TrainConfig,
    data_dir: Path | str,
    out_dir: Path | str,
    progress: bool = True,
    resume: bool = True,
    device: str | torch.device = "cpu",
    init_from: Path | str | None = None,
) -> TrainResult:
    """Train (or resume training) a GPR network.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (gloo on
    CPU, nccl on CUDA) if it is not already; every rank trains on its share of the scenes and
    only rank 0 writes files.

    :param config: the training configuration.
    :param data_dir: dataset folder (a validation split is held out, see
        :func:`split_scenes`).
    :param out_dir: output folder (checkpoints, metrics).
    :param progress: show tqdm progress bars (rank 0).
    :param resume: continue from ``out_dir/last.pt`` when it exists.
    :param device: ``"cpu"`` or a CUDA device (with DDP: ``cuda:LOCAL_RANK``).
    :param init_from: a checkpoint whose weights start a *new* run (fine-tuning with a fresh
        optimizer and schedule); ignored when ``out_dir/last.pt`` is resumed.
    :return: the last epoch's metrics and the trained model.
    :raises CheckpointError: if ``last.pt`` is unreadable or was trained with another network.
    :raises ConfigError: if only stage 2 is to learn but there are no weights to start from.
    :raises NetworkError: if the dataset is empty.
    """
    out = Path(out_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    dev = torch.device(device)
    net_cfg = config.network

    reader = DatasetReader(Path(data_dir))
    train_idx, val_idx = split_scenes(reader.scene_indices(), config.val_fraction, config.seed)
    if not train_idx:
        raise NetworkError(f"{data_dir} holds no scene to train on")
    train_ds = SceneDataset(data_dir, net_cfg, train_idx, augment=config.augment,
                            seed=config.seed)
    val_ds = SceneDataset(data_dir, net_cfg, val_idx, augment=False, seed=config.seed)
    train_sampler: DistributedSampler[Any] = DistributedSampler(
        train_ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed
    )
    val_sampler: DistributedSampler[Any] = DistributedSampler(
        val_ds, num_replicas=world, rank=rank, shuffle=False
    )
    loader_args: dict[str, Any] = {"batch_size": config.batch_size, "collate_fn": collate,
                                   "num_workers": config.num_workers}
    train_loader = DataLoader(train_ds, sampler=train_sampler, **loader_args)
    val_loader = DataLoader(val_ds, sampler=val_sampler, **loader_args)

    torch.manual_seed(config.seed)
    core = GPRNet(net_cfg).to(dev)
    # Freeze before wrapping: DDP reduces the gradients of the parameters that require one.
    params = trainable_parameters(core, config.train_parts)
    model: torch.nn.Module = core
    if world > 1:
        model = DistributedDataParallel(core, device_ids=[dev.index] if dev.type == "cuda"
                                        else None)
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | torch.optim.lr_scheduler.MultiStepLR
    if config.lr_drop_epochs:
        # a step after epoch e sets the LR of epoch e + 1
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[e - 1 for e in config.lr_drop_epochs],
            gamma=config.plateau_factor,
        )
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor,
            patience=config.plateau_patience, min_lr=config.min_lr,
        )
    start_epoch = 0
    best = math.inf
    metrics: dict[str, float] = {}
    last_path = out / LAST
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=dev)
        if not same_network(state["network_config"], net_cfg):
            raise CheckpointError(
                f"{last_path} was trained with another network_config; use another out_dir "
                "or resume=False"
            )
        for key in ("optimizer_state", "scheduler_state", "rng_state"):
            if key not in state:
                raise CheckpointError(f"{last_path} has no {key}; it cannot be resumed")
        saved_drops = _saved_lr_drop_epochs(state)
        if saved_drops != config.lr_drop_epochs:
            raise CheckpointError(
                f"{last_path} was trained with lr_drop_epochs {list(saved_drops)} "
                f"({'plateau rule' if not saved_drops else 'step schedule'}), this run asks "
                f"for {list(config.lr_drop_epochs)}; use the same schedule, another out_dir "
                "or resume=False"
            )
        core.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        torch.set_rng_state(state["rng_state"].cpu())
        start_epoch = int(state["epoch"])
        best = float(state.get("best_val_loss", math.inf))
        metrics = dict(state.get("metrics", {}))
    elif init_from is not None:
        init = load_checkpoint(Path(init_from), map_location=dev)
        if not same_network(init["network_config"], net_cfg, training_too=False):
            raise CheckpointError(
                f"{init_from} has another network than this run's (network_config differs "
                f"beyond the training-only keys {TRAINING_ONLY_KEYS})"
            )
        core.load_state_dict(init["model_state"])
    elif config.train_parts != "all":
        raise ConfigError(
            f"train_parts={config.train_parts!r} freezes the backbone and stage 1, so it needs "
            "trained weights: give init_from (--init-from) or resume a run"
        )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    epochs = _progress(range(start_epoch, config.epochs), progress and rank == 0, desc="epochs",
                       initial=start_epoch, total=config.epochs)
    for epoch in epochs:
        train_ds.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        metrics = {"epoch": float(epoch + 1), "lr": float(optimizer.param_groups[0]["lr"])}
        # decayed weights go subnormal: steps are 3-5x slower without this
        with flushed_denormals():
            metrics.update(_run_epoch(model, core, train_loader, optimizer, config, epoch,
                                      rank, world, dev, progress, f"train {epoch + 1}"))
            metrics.update(_run_epoch(model, core, val_loader, None, config, epoch, rank,
                                      world, dev, progress, f"val {epoch + 1}"))
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(metrics["val_total"])
        else:
            scheduler.step()
        improved = metrics["val_total"] < best
        best = min(best, metrics["val_total"])
        if rank == 0:
            extra = {
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "rng_state": torch.get_rng_state(),
                "best_val_loss": best,
                "train_config": json.dumps(config.to_dict()),
            }
            save_checkpoint(last_path, core, net_cfg, epoch + 1, metrics, **extra)
            if improved:
                save_checkpoint(out / BEST, core, net_cfg, epoch + 1, metrics, **extra)
            with open(out / METRICS, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(metrics, sort_keys=True) + "\n")
            plot_metrics(out / METRICS, out / "metrics.png")
        if world > 1:
            dist.barrier()
    return TrainResult(metrics=metrics, model=core, epoch=max(start_epoch, config.epochs))
