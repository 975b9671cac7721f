"""The fast network code against the straightforward reference: same numbers, same grasps.

The backbone, heads and stage 2 run channels-last with split first layers, regress only the
NMS candidates and crop with a numba kernel (see :mod:`gpr_ros.core.network.pointnet2` and
:mod:`gpr_ros.core.network.model`); :mod:`gpr_ros.core.network.reference` computes the same
thing the textbook way. Here both run on the same weights and inputs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch

from gpr_ros.core.fixtures import Box, box_scene_cloud
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.kernels import NUMBA_AVAILABLE
from gpr_ros.core.network import model as model_module
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.inference import GraspDetector
from gpr_ros.core.network.model import GPRNet, _crop_torch
from gpr_ros.core.network.pointnet2 import (
    channels_first_reference,
    channels_last,
    gather_points,
    shared_mlp,
)
from gpr_ros.core.network.reference import reference_backbone, reference_detect, reference_gather
from gpr_ros.resources import share_dir

MODEL = share_dir() / "models" / "gpr_default.pt"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("norm", ["group", "batch"])
@pytest.mark.parametrize("shape", [(2, 50, 7), (2, 20, 6, 7)])
def test_channels_last_equals_the_modules(norm: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    mlp = shared_mlp(7, (16, 32), norm, 8, dims=len(shape) - 2)
    for layer in mlp:  # non-trivial affine parameters
        if isinstance(layer, torch.nn.GroupNorm | torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
            torch.nn.init.uniform_(layer.bias, -0.5, 0.5)
    twin = copy.deepcopy(mlp)
    x = torch.randn(*shape) * 3 + 1
    for training in (True, False):  # batch norm: batch statistics, then running ones
        mlp.train(training)
        twin.train(training)
        x1 = x.clone().requires_grad_(True)
        x2 = x.clone().requires_grad_(True)
        got, want = channels_last(mlp, x1), channels_first_reference(twin, x2)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        (got * torch.arange(got.numel()).reshape(got.shape)).sum().backward()
        (want * torch.arange(want.numel()).reshape(want.shape)).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-3)
        for a, b in zip(mlp.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=2e-3, atol=1e-2)
        for a, b in zip(mlp.buffers(), twin.buffers(), strict=True):  # running statistics
            torch.testing.assert_close(a, b)
        mlp.zero_grad()
        twin.zero_grad()


def test_channels_last_rejects_other_layers() -> None:
    with pytest.raises(TypeError, match="Linear"):
        channels_last(torch.nn.Sequential(torch.nn.Linear(3, 4)), torch.zeros(1, 5, 3))


def test_gather_points_batched() -> None:
    values = torch.randn(3, 10, 4)
    index = torch.randint(0, 10, (3, 5, 2))
    torch.testing.assert_close(gather_points(values, index), reference_gather(values, index))
    for b in range(3):
        torch.testing.assert_close(gather_points(values, index)[b], values[b][index[b]])


def test_backbone_and_heads_equal_the_reference(batch: dict) -> None:
    torch.manual_seed(1)
    net = GPRNet(NetworkConfig.tiny())
    twin = copy.deepcopy(net)
    points, groups = batch["points"], batch["groups"]
    fast = net.backbone(points, groups)
    slow = reference_backbone(twin.backbone, points, groups)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # Gradients too: training runs the same code.
    fast.pow(2).sum().backward()
    slow.pow(2).sum().backward()
    for (name, a), b in zip(net.backbone.named_parameters(), twin.backbone.parameters(),
                            strict=True):
        scale = float(b.grad.abs().max())
        assert float((a.grad - b.grad).abs().max()) <= 1e-4 * max(scale, 1.0), name
    # The regression of some points equals the full head output at those points.
    with torch.no_grad():
        seg, reg = net.stage1(fast)
        index = torch.tensor([[0, 5, 5, 17], [3, 2, 1, 0]])
        torch.testing.assert_close(net.regression_at(fast, index),
                                   torch.stack([reg[b][:, index[b]] for b in range(2)]))
        cf = slow.transpose(1, 2)
        torch.testing.assert_close(seg, twin.seg_head(cf).squeeze(1), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
def test_numba_crop_equals_torch_crop() -> None:
    rng = np.random.default_rng(4)
    pts = torch.from_numpy(rng.uniform(-0.05, 0.05, (2, 600, 3)))
    g = Grasps.from_rotations(rng.uniform(-0.02, 0.02, (14, 3)),
                              Rotation.random(14, random_state=5).as_matrix(), 0.05)
    center = torch.from_numpy(g.center.copy()).reshape(2, 7, 3)
    rot = torch.from_numpy(g.rotations.copy()).reshape(2, 7, 3, 3)
    noise = torch.rand((2, 7, 600), generator=torch.Generator().manual_seed(0))
    for k, bounds in ((8, (-0.001, 0.031, 0.026, 0.01)), (64, (-0.001, 0.031, 0.026, 0.01)),
                      (4, (-0.001, 0.0, 0.0, 0.0))):  # few, many and no points inside
        idx_n, count_n = model_module._crop_numba(pts, center, rot, noise, bounds, k)
        idx_t, count_t = model_module._crop_torch(pts, center, rot, noise, bounds, k)
        torch.testing.assert_close(count_n, count_t)
        full = count_t > 0  # an empty region's indices are never used
        torch.testing.assert_close(idx_n[full], idx_t[full])
    assert (count_t == 0).all() and (count_n == 0).all()


@pytest.mark.skipif(not MODEL.is_file(), reason="no shipped model")
def test_detect_equals_the_reference_on_the_shipped_model() -> None:
    detector = GraspDetector.from_checkpoint(MODEL)
    boxes = [Box((-0.05, 0.02), (0.03, 0.06, 0.04)), Box((0.06, -0.03), (0.05, 0.025, 0.03)),
             Box((0.0, -0.08), (0.02, 0.08, 0.05))]
    cloud = box_scene_cloud(boxes, rng=np.random.default_rng(0))
    fast = detector.detect(cloud)
    slow = reference_detect(detector, cloud, reference_grouping=False)
    assert len(fast) > 5 and len(fast) == len(slow)
    np.testing.assert_allclose(fast.score, slow.score, atol=1e-5)
    np.testing.assert_allclose(fast.center, slow.center, atol=1e-5)
    np.testing.assert_allclose(fast.rotations, slow.rotations, atol=1e-4)
    np.testing.assert_allclose(fast.width, slow.width, atol=1e-5)
    # With its own grouping (exact FPS) the reference still finds grasps of the same boxes.
    ref = reference_detect(detector, cloud)
    assert len(ref) > 5 and np.all(ref.width <= detector.config.gripper.max_width)


def test_warm_up_changes_no_result(batch: dict) -> None:
    torch.manual_seed(2)
    cfg = NetworkConfig.tiny(proposal_threshold=0.0)  # random weights: keep every proposal
    cloud = batch["points"][0].numpy().astype(np.float64)
    cold = GraspDetector(GPRNet(cfg)).detect(cloud)
    torch.manual_seed(2)  # the same weights
    detector = GraspDetector(GPRNet(cfg))
    assert detector.warm_up() > 0.0
    warm = detector.detect(cloud)
    assert len(cold) > 0 and len(warm) == len(cold)
    np.testing.assert_array_equal(warm.center, cold.center)
    np.testing.assert_array_equal(warm.score, cold.score)


def test_further_pose_passes_move_the_pose_only(batch: dict) -> None:
    torch.manual_seed(3)
    cfg = NetworkConfig.tiny(proposal_threshold=0.0)  # random weights: keep every proposal
    model = GPRNet(cfg)
    cloud = batch["points"][0].numpy().astype(np.float64)
    one = GraspDetector(model, pose_passes=1)
    two = GraspDetector(model, pose_passes=2)
    g1 = one.detect(cloud)
    g2 = two.detect(cloud)
    assert len(g1) > 0 and len(g2) == len(g1)
    # width and score come from the first pass (the order is by score, so it is the same)
    np.testing.assert_array_equal(g2.score, g1.score)
    np.testing.assert_array_equal(g2.width, g1.width)
    assert np.abs(g2.center - g1.center).max() > 1e-6  # the second pass moved the poses
    # the reference follows the detector's passes
    ref = reference_detect(two, cloud, reference_grouping=False)
    np.testing.assert_allclose(ref.center, g2.center, atol=1e-5)
    np.testing.assert_allclose(ref.rotations, g2.rotations, atol=1e-4)
    # refine_poses with one pass is the paper's refine + apply_refinement
    xyz = torch.from_numpy(batch["points"][:1].numpy()).float()
    groups = {k: v[:1] for k, v in batch["groups"].items()}
    with torch.no_grad():
        feats = model.backbone(xyz, groups)
        seg, reg = model.stage1(feats)
        center, rot, width = model.decode_proposals(xyz, reg)
        c, r, w = center[:, :8], rot[:, :8], width[:, :8]
        s2 = model.refine(feats, seg, xyz, c, r, torch.Generator().manual_seed(0))
        expect = model.apply_refinement(c, r, w, s2)
        got = model.refine_poses(feats, seg, xyz, c, r, w, torch.Generator().manual_seed(0), 1)
    for a, b in zip(expect, got[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_further_passes_refine_only_the_returned_grasps(batch: dict) -> None:
    torch.manual_seed(4)
    cfg = NetworkConfig.tiny(proposal_threshold=0.0)  # random weights: keep every proposal
    model = GPRNet(cfg)
    cloud = batch["points"][0].numpy().astype(np.float64)
    detector = GraspDetector(model, pose_passes=3)
    every = detector.detect(cloud)
    assert len(every) > 6
    for top in (1, 5, len(every)):  # (more than proposals_test would refine more)
        # the same crops for the grasps returned: bit-identical to refining all of them
        some = detector.detect(cloud, max_grasps=top)
        assert len(some) == min(top, len(every))
        for field in ("center", "rotations", "width", "score"):
            np.testing.assert_array_equal(getattr(some, field),
                                          getattr(every, field)[:top])
    # and the further passes ran on them (their poses differ from one pass)
    once = GraspDetector(model, pose_passes=1).detect(cloud, max_grasps=5)
    assert np.abs(once.center - every.center[:5]).max() > 1e-6
    ref = reference_detect(detector, cloud, reference_grouping=False, max_grasps=5)
    np.testing.assert_allclose(ref.center, every.center[:5], atol=1e-5)
    np.testing.assert_allclose(ref.rotations, every.rotations[:5], atol=1e-4)
    # the crop refuses rows of keys of the wrong shape, out of range or out of order
    xyz = torch.from_numpy(batch["points"][:1].numpy()).float()
    center = xyz[:, :4]
    rot = torch.eye(3).expand(1, 4, 3, 3)
    for rows, drawn in ((torch.tensor([[0, 1, 2]]), 5), (torch.tensor([[0, 1, 2, 5]]), 5),
                        (torch.tensor([[0, 2, 1, 3]]), 5), (None, 5)):
        with pytest.raises(ValueError, match="rows|drawn"):
            model.crop(xyz, center, rot, torch.Generator(), rows, drawn)


def test_crop_keys_computed_in_the_kernel_are_torch_rand(batch: dict) -> None:
    """The numba crop draws torch.rand's numbers itself (rows skipped), or falls back."""
    # with numba and this PyTorch the kernel path is the one taken
    assert model_module._mt19937_matches_torch() == NUMBA_AVAILABLE
    torch.manual_seed(5)
    model = GPRNet(NetworkConfig.tiny())
    xyz = torch.from_numpy(batch["points"][:2].numpy()).float()
    b, n = xyz.shape[:2]
    center = xyz[:, 10:17] + 0.003
    rot = torch.from_numpy(Rotation.random(b * 7, random_state=0).as_matrix()).float()
    rot = rot.reshape(b, 7, 3, 3)
    rows = torch.tensor([[0, 3, 4, 9, 10, 11, 15], [1, 2, 5, 6, 7, 8, 14]])
    for seed in (0, 11):
        # the keys as the tensor crop takes them: torch.rand over every row, then gathered
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand((b, 16, n), generator=gen)
        noise = torch.gather(noise, 1, rows.unsqueeze(-1).expand(-1, -1, n))
        cfg, g = model.config, model.config.gripper
        e = cfg.enlarge + 1e-9
        bounds = (-e, g.finger_depth + e, 0.5 * g.max_width + e, 0.5 * g.finger_height + e)
        origin = center - g.finger_depth * rot[..., 0]
        want_idx, want_count = _crop_torch(xyz, origin, rot, noise, bounds, cfg.crop_points)
        mine = torch.Generator().manual_seed(seed)
        idx, _, count = model.crop(xyz, center, rot, mine, rows, 16)
        assert int(count.min()) > 0
        torch.testing.assert_close(count, want_count, rtol=0, atol=0)
        torch.testing.assert_close(idx, want_idx, rtol=0, atol=0)
        # and the generator went on as after torch.rand
        assert torch.equal(mine.get_state(), gen.get_state())


@pytest.mark.parametrize("passes", [0, 9, 1.5, True])
def test_pose_passes_out_of_range_are_refused(passes: object) -> None:
    with pytest.raises(NetworkError, match="pose_passes"):
        GraspDetector(GPRNet(NetworkConfig.tiny()), pose_passes=passes)  # type: ignore[arg-type]
