"""Training, checkpoints, resume, DDP (2 gloo processes) and detection on tiny scenes."""

from __future__ import annotations

from dataclasses import replace
import json
import os
from pathlib import Path
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import STAGE_1, STAGE_2
from gpr_ros.core.network.checkpoint import load_model, save_checkpoint
from gpr_ros.core.network.config import NetworkConfig, TrainConfig
from gpr_ros.core.network.data import SceneDataset, collate
from gpr_ros.core.network.errors import CheckpointError
from gpr_ros.core.network.inference import TIMING_FIELDS, GraspDetector, benchmark_inference
from gpr_ros.core.network.losses import compute_losses
from gpr_ros.core.network.model import GPRNet
from gpr_ros.core.network.synthetic import synthetic_scene, write_synthetic_dataset
from gpr_ros.core.network.train import train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds"), 4, seed=0, num_points=700)


def _train_config(**kw) -> TrainConfig:
    base = TrainConfig(network=NetworkConfig.tiny(), epochs=2, batch_size=2, val_fraction=0.25,
                       seed=0, augment=True, lr=0.02)
    return replace(base, **kw)


def test_loss_falls_when_overfitting_two_scenes(dataset: Path) -> None:
    cfg = NetworkConfig.tiny()
    ds = SceneDataset(dataset, cfg, indices=[0, 1])
    batch = collate([ds[0], ds[1]])
    torch.manual_seed(0)
    net = GPRNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    threads = torch.get_num_threads()
    # One thread: tiny tensors gain nothing from two, and a busy machine makes OpenMP spin.
    torch.set_num_threads(1)
    try:
        for step in range(40):
            out = net(batch["points"], batch["groups"], batch["gt"], seed=step)
            loss = compute_losses(out, batch, cfg)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:3])


def test_checkpoint_round_trip_gives_identical_outputs(dataset: Path, tmp_path: Path) -> None:
    cfg = NetworkConfig.tiny()
    torch.manual_seed(1)
    net = GPRNet(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", net, cfg, epoch=3, metrics={"val_total": 1.5})
    loaded = load_model(path)
    assert loaded.config == cfg and not loaded.training
    batch = collate([SceneDataset(dataset, cfg)[0]])
    with torch.no_grad():
        a = net(batch["points"], batch["groups"])
        b = loaded(batch["points"], batch["groups"])
    for key in ("seg_logits", "reg", "center", "rotation", "width"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["stage2"]["conf"], b["stage2"]["conf"])


def test_bad_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    cfg = NetworkConfig.tiny()
    net = GPRNet(cfg)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "good.pt", net, cfg, epoch=1)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(tmp_path / "junk.pt")
    other = NetworkConfig.tiny(head_width=64)
    save_checkpoint(tmp_path / "mismatch.pt", net, other, epoch=1)
    with pytest.raises(CheckpointError, match="does not match its network_config"):
        load_model(tmp_path / "mismatch.pt")
    torch.save({"format_version": 99}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="missing key"):
        load_model(tmp_path / "old.pt")


def test_resume_matches_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    cfg = _train_config()
    full = train(cfg, dataset, tmp_path / "full", progress=False)
    part = train(replace(cfg, epochs=1), dataset, tmp_path / "part", progress=False)
    assert part.epoch == 1
    resumed = train(cfg, dataset, tmp_path / "part", progress=False)
    assert resumed.epoch == 2
    for (name, a), (_, b) in zip(full.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert full.metrics == resumed.metrics
    rows = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1.0, 2.0]
    assert (tmp_path / "part" / "metrics.png").stat().st_size > 0
    assert load_model(tmp_path / "part" / "last.pt").config == cfg.network
    assert (tmp_path / "full" / "best.pt").exists()


def test_lr_drop_epochs_step_the_lr_and_resume_only_with_the_same_schedule(
        dataset: Path, tmp_path: Path) -> None:
    # 3 epochs, LR /10 from epoch 2 and again from epoch 3, whatever the validation loss does
    cfg = _train_config(epochs=3, lr_drop_epochs=(2, 3), optimizer="adam", lr=1e-3)
    full = train(cfg, dataset, tmp_path / "full", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-4, 1e-5])
    train(replace(cfg, epochs=2, lr_drop_epochs=(2,)), dataset, tmp_path / "part",
          progress=False)
    # a checkpoint trained with another schedule is not resumed silently
    with pytest.raises(CheckpointError, match="lr_drop_epochs"):
        train(replace(cfg, lr_drop_epochs=()), dataset, tmp_path / "part", progress=False)
    resumed = train(replace(cfg, lr_drop_epochs=(2,)), dataset, tmp_path / "part",
                    progress=False)
    assert resumed.metrics["lr"] == pytest.approx(1e-4)
    assert full.metrics["lr"] == pytest.approx(1e-5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ((1,), (3, 2), (4,), (2, 2)):
        with pytest.raises(ConfigError, match="lr_drop_epochs"):
            _train_config(epochs=3, lr_drop_epochs=bad)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str, parts: str,
                init: str | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        config = _train_config(epochs=1, train_parts=parts)
        if parts == "stage2":  # the stage-C recipe: frozen backbone, accuracy-aware confidence
            config = replace(config, network=NetworkConfig.tiny(confidence_target="refined"))
        result = train(config, data, out, progress=False, init_from=init)
        torch.save(result.model.state_dict(), Path(out) / f"rank{rank}.pt")
        # both ranks done before either tears gloo down: a rank that destroys its group while
        # the other still talks to it can abort the other ("terminate called without an
        # active exception", seen once in a CI run)
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("parts", ["all", "stage2"])
def test_ddp_two_gloo_processes_end_with_identical_weights(dataset: Path, tmp_path: Path,
                                                           parts: str) -> None:
    out = tmp_path / "ddp"
    torch.manual_seed(0)  # as train() does before building the network (seed 0)
    net = GPRNet(NetworkConfig.tiny())
    init = {k: v.clone() for k, v in net.state_dict().items()}
    start = None
    if parts == "stage2":  # fine-tuning starts from weights (here: the seeded initial ones)
        start = str(save_checkpoint(tmp_path / "init.pt", net, NetworkConfig.tiny(), epoch=0))
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(dataset), str(out), parts, start),
             nprocs=2, join=True)
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], init[k]) for k in a)  # it trained
    if parts == "stage2":  # and only stage 2 did
        assert all(torch.equal(a[k], init[k]) for k in a
                   if not k.startswith(("s2_encoder.", "s2_head.")))
    assert (out / "last.pt").exists() and not (out / "rank1" ).exists()


def test_detect_returns_ranked_grasps_within_gripper(tmp_path: Path) -> None:
    cfg = NetworkConfig.tiny(proposal_threshold=0.0)
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "d.pt", GPRNet(cfg), cfg, epoch=0)
    detector = GraspDetector.from_checkpoint(path)
    cloud = synthetic_scene(np.random.default_rng(0), num_points=1500)["points"]
    for stage in (STAGE_1, STAGE_2):
        grasps = detector.detect(cloud, stage=stage)
        assert 0 < len(grasps) <= cfg.proposals_test
        assert np.all(grasps.width <= 0.05) and np.all(grasps.width >= 0)
        assert np.all(np.diff(grasps.score) <= 0)
        assert np.all(grasps.stage == stage)
        timing = detector.last_timing
        assert set(TIMING_FIELDS) <= set(timing)
        assert timing["total"] >= timing["backbone"] > 0
        assert timing["num_input_points"] == 1500 and timing["num_used_points"] == 512
    again = detector.detect(cloud)
    np.testing.assert_array_equal(again.center, detector.detect(cloud).center)
    small = detector.detect(cloud[:100], max_grasps=5)  # fewer points than the input size
    assert len(small) <= 5
    bench = benchmark_inference(detector, cloud, repeats=2, warmup=1)
    assert bench["total"] > 0


def test_train_cli_refuses_a_negative_malloc_retain(dataset: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from gpr_ros.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(dataset), "--out", str(out),
                 "--malloc-retain-mb", "-1"]) == 2
    assert "--malloc-retain-mb: megabytes must be >= 0" in capsys.readouterr().err
    assert not out.exists()
