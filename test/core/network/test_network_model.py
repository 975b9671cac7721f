"""GPRNet modules: shapes, bin decoding vs the core, rotations, the stage-2 crop, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import BIN_KEYS, Grasps, GripperModel, grasps_from_angles
from gpr_ros.core.network.config import NetworkConfig, TrainConfig
from gpr_ros.core.network.data import prepare_scene, rotation_about_z
from gpr_ros.core.network.losses import compute_losses, focal_loss
from gpr_ros.core.network.model import GPRNet, axis_angle_to_matrix, rotations_from_angles
from gpr_ros.core.network.synthetic import synthetic_scene


def test_config_round_trip_and_validation() -> None:
    for cfg in (NetworkConfig.cpu(), NetworkConfig.paper(), NetworkConfig.tiny()):
        assert NetworkConfig.from_dict(cfg.to_dict()) == cfg
    train = TrainConfig(network=NetworkConfig.tiny(), epochs=3)
    assert TrainConfig.from_dict(train.to_dict()) == train
    with pytest.raises(ConfigError, match="unknown NetworkConfig"):
        NetworkConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="divisible"):
        NetworkConfig.tiny(head_width=30)
    with pytest.raises(ConfigError, match="exceeds"):
        NetworkConfig.tiny(num_points=64)


def test_forward_shapes(batch: dict) -> None:
    cfg = NetworkConfig.tiny()
    torch.manual_seed(0)
    net = GPRNet(cfg)
    b, n = batch["points"].shape[:2]
    feats = net.backbone(batch["points"], batch["groups"])
    assert feats.shape == (b, n, cfg.feature_channels)
    seg, reg = net.stage1(feats)
    assert seg.shape == (b, n)
    assert reg.shape == (b, 2 * sum(cfg.bins.spec(k).count for k in BIN_KEYS), n)
    out = net(batch["points"], batch["groups"], batch["gt"], seed=1)
    p = cfg.proposals_train
    assert out["center"].shape == (b, p, 3) and out["rotation"].shape == (b, p, 3, 3)
    s2 = out["stage2"]
    assert s2["conf"].shape == (b, p) and s2["d_center"].shape == (b, p, 3)
    assert s2["d_rot"].shape == (b, p, 3) and s2["d_width"].shape == (b, p)
    assert out["proposals"].valid.all()
    net.eval()
    with torch.no_grad():
        inf = net(batch["points"], batch["groups"])
    assert inf["stage2"]["conf"].shape == (b, cfg.proposals_test)


def test_network_decoding_agrees_with_core(batch: dict) -> None:
    cfg = NetworkConfig.tiny()
    torch.manual_seed(3)
    net = GPRNet(cfg).eval()
    reg = torch.randn(1, net.reg_head[-1].out_channels, 200, dtype=torch.float64)
    xyz = torch.rand(1, 200, 3, dtype=torch.float64)
    center, rot, width = net.decode_proposals(xyz, reg)
    encoded = {}
    for key, (logits, res) in net.split_regression(reg).items():
        bins = logits[0].argmax(-1)
        encoded[key] = (bins.numpy(), res[0].gather(-1, bins[:, None])[:, 0].numpy())
    ref = cfg.bins.decode_grasps(xyz[0].numpy(), encoded)
    np.testing.assert_allclose(center[0].numpy(), ref.center, atol=1e-9)
    np.testing.assert_allclose(rot[0].numpy(), ref.rotations, atol=1e-9)
    np.testing.assert_allclose(width[0].numpy(), ref.width, atol=1e-12)


def test_rotations_from_angles_matches_core() -> None:
    rng = np.random.default_rng(0)
    angles = np.column_stack([rng.uniform(0, 2 * np.pi, 50), rng.uniform(0, np.pi / 2, 50),
                              rng.uniform(-np.pi / 2, np.pi / 2, 50)])
    ref = grasps_from_angles(np.zeros((50, 3)), angles, 0.03)
    got = rotations_from_angles(torch.from_numpy(angles)).numpy()
    np.testing.assert_allclose(got, ref.rotations, atol=1e-12)


def test_axis_angle_to_matrix() -> None:
    vec = np.random.default_rng(1).normal(size=(20, 3))
    vec[0] = 0.0
    vec[1] = 1e-7
    got = axis_angle_to_matrix(torch.from_numpy(vec)).numpy()
    np.testing.assert_allclose(got, Rotation.from_rotvec(vec).as_matrix(), atol=1e-10)


def test_crop_matches_gripper_model() -> None:
    cfg = NetworkConfig.tiny(crop_points=8, enlarge=0.005)
    net = GPRNet(cfg)
    rng = np.random.default_rng(2)
    pts = rng.uniform(-0.05, 0.05, (400, 3))
    grasps = Grasps.from_rotations(rng.uniform(-0.01, 0.01, (6, 3)),
                                   Rotation.random(6, random_state=3).as_matrix(), 0.05)
    idx, local, count = net.crop(torch.from_numpy(pts)[None],
                                 torch.tensor(grasps.center)[None],
                                 torch.tensor(grasps.rotations)[None],
                                 torch.Generator().manual_seed(0))
    gm = GripperModel()
    mask = gm.points_in_closing_region(pts, grasps.__class__(
        grasps.center, grasps.approach, grasps.closing, gm.max_width), enlarge=0.005)
    np.testing.assert_array_equal(count[0].numpy(), mask.sum(1))
    canon = gm.to_canonical(pts, grasps)
    for g in range(6):
        chosen = idx[0, g].numpy()
        assert mask[g, chosen].all()
        k = min(mask[g].sum(), 8)
        assert len(np.unique(chosen)) == k  # no repeats unless the region has fewer points
        np.testing.assert_allclose(local[0, g].numpy(), canon[g, chosen], atol=1e-12)


def test_focal_loss_down_weights_easy_examples() -> None:
    logits = torch.tensor([4.0, -4.0, 0.0])
    target = torch.tensor([1.0, 0.0, 1.0])
    fl = focal_loss(logits, target, alpha=0.5, gamma=2.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert torch.all(fl < 0.5 * bce)
    assert fl[2] > 10 * fl[0]
    np.testing.assert_allclose(focal_loss(logits, target, 0.5, 0.0), 0.5 * bce, rtol=1e-6)


def test_losses_are_finite_and_reach_every_parameter(batch: dict) -> None:
    cfg = NetworkConfig.tiny()
    torch.manual_seed(0)
    net = GPRNet(cfg)
    out = net(batch["points"], batch["groups"], batch["gt"], seed=0)
    losses = compute_losses(out, batch, cfg)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bin_losses_match_a_per_key_reference_with_the_same_gradient(batch: dict) -> None:
    """Eq. 5's bin terms, written out key by key on the regression output: cross entropy over
    each key's own bin logits, smooth L1 of the residual of the ground-truth bin, positive
    points only, divided by N_pos. ``compute_losses`` splits the output once; its values and
    its gradient with respect to the output are those of this reference, bit for bit."""
    cfg = NetworkConfig.tiny()
    torch.manual_seed(0)
    net = GPRNet(cfg)
    out = net(batch["points"], batch["groups"], batch["gt"], seed=0)
    reg = out["reg"].detach().clone().requires_grad_(True)
    losses = compute_losses({**out, "reg": reg}, batch, cfg)
    (grad,) = torch.autograd.grad(losses["bin_cls"] + 3.0 * losses["bin_res"], reg)

    ref_reg = reg.detach().clone().requires_grad_(True)
    mask = batch["reg_mask"].to(ref_reg.dtype)
    assert int(mask.sum()) > 0
    n_pos = mask.sum()
    cls = res = ref_reg.new_zeros(())
    start = 0
    for j, key in enumerate(BIN_KEYS):
        count = cfg.bins.spec(key).count
        logits = ref_reg[:, start:start + count, :]  # (B, K, N): cross entropy's class dim 1
        residual = ref_reg[:, start + count:start + 2 * count, :]
        start += 2 * count
        target = batch["bin_target"][..., j]
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        cls = cls + (ce * mask).sum()
        picked = residual.gather(1, target.unsqueeze(1)).squeeze(1)
        sl1 = torch.nn.functional.smooth_l1_loss(
            picked, batch["res_target"][..., j].to(picked.dtype), reduction="none",
            beta=1.0 / 9.0)
        res = res + (sl1 * mask).sum()
    assert start == reg.shape[1]
    (ref_grad,) = torch.autograd.grad(cls / n_pos + 3.0 * (res / n_pos), ref_reg)
    torch.testing.assert_close(losses["bin_cls"], cls / n_pos, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(losses["bin_res"], res / n_pos, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-9)
    # Where a point is not positive, nothing flows back into its regression output.
    assert bool((grad.abs().sum(1)[mask == 0] == 0).all())


def test_augmentation_rotates_targets_consistently() -> None:
    cfg = NetworkConfig.tiny()
    scene = synthetic_scene(np.random.default_rng(4), num_points=700)
    plain = prepare_scene(scene, cfg, np.random.default_rng(9), augment=False)
    rotated = prepare_scene(scene, cfg, np.random.default_rng(9), augment=True)
    # The same points were drawn; the rotation angle is the one drawn after them.
    rng = np.random.default_rng(9)
    rng.choice(len(scene["points"]), cfg.num_points, replace=False)
    phi = rng.uniform(0.0, 2 * math.pi)
    rot = rotation_about_z(phi)[:3, :3]
    np.testing.assert_allclose(rotated["points"].numpy(), plain["points"].numpy() @ rot.T,
                               atol=1e-6)
    pos = plain["reg_mask"].numpy()
    assert pos.any() and np.array_equal(pos, rotated["reg_mask"].numpy())

    def decode(item: dict) -> Grasps:
        enc = {k: (item["bin_target"][pos, j].numpy(), item["res_target"][pos, j].numpy())
               for j, k in enumerate(BIN_KEYS)}
        return cfg.bins.decode_grasps(item["points"][pos].numpy(), enc)

    a, b = decode(plain), decode(rotated)
    moved = a.transformed(rotation_about_z(phi))
    np.testing.assert_allclose(b.center, moved.center, atol=1e-5)
    np.testing.assert_allclose(b.approach, moved.approach, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(b.closing * moved.closing, 1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(b.width, a.width, atol=1e-7)
