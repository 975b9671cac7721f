"""The stage-2 confidence trained on refined-grasp accuracy, and stage-2-only fine-tuning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.network.checkpoint import load_model, save_checkpoint
from gpr_ros.core.network.config import (
    TRAINING_ONLY_KEYS,
    NetworkConfig,
    TrainConfig,
    same_network,
)
from gpr_ros.core.network.errors import CheckpointError
from gpr_ros.core.network.losses import compute_losses
from gpr_ros.core.network.model import GPRNet
from gpr_ros.core.network.synthetic import write_synthetic_dataset
from gpr_ros.core.network.train import train, trainable_parameters


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds"), 4, seed=0, num_points=700)


def _proposals(center: np.ndarray, width: np.ndarray) -> tuple[torch.Tensor, ...]:
    """One scene of top-down proposals (identity rotation) as batched tensors."""
    p = len(center)
    rot = torch.eye(3, dtype=torch.float32).expand(1, p, 3, 3).clone()
    return (torch.tensor(center, dtype=torch.float32)[None], rot,
            torch.tensor(width, dtype=torch.float32)[None])


def _zero_refinement(p: int) -> dict[str, torch.Tensor]:
    return {"conf": torch.zeros(1, p), "d_center": torch.zeros(1, p, 3),
            "d_rot": torch.zeros(1, p, 3), "d_width": torch.zeros(1, p)}


def test_refined_accuracy_label_needs_pose_and_width_close_to_a_ground_truth_grasp() -> None:
    cfg = NetworkConfig.tiny(confidence_target="refined")
    net = GPRNet(cfg)
    eye = np.eye(3)
    gt = Grasps(np.array([[0.0, 0.0, 0.5]]), eye[None, :, 0], eye[None, :, 1],
                np.array([0.03]), np.array([1.0]))
    center = np.array([[0.0, 0.0, 0.5],      # the ground-truth grasp itself
                       [0.004, 0.0, 0.5],    # 4 mm away: D = 0.004
                       [0.015, 0.0, 0.5],    # 15 mm away: D = 0.015
                       [0.0, 0.0, 0.5],      # right pose, width 8 mm off
                       [0.0, 0.0, 0.5]])     # width 3 mm off
    width = np.array([0.03, 0.03, 0.03, 0.038, 0.033])
    label = net.refined_accuracy_label(*_proposals(center, width), _zero_refinement(5), [gt])
    assert label.tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0]]
    # The refinement is applied before judging: a residual that moves the 15 mm proposal
    # onto the ground truth makes it accurate (d_center is in units of center_scale).
    s2 = _zero_refinement(5)
    s2["d_center"][0, 2, 0] = -0.015 / cfg.center_scale
    label = net.refined_accuracy_label(*_proposals(center, width), s2, [gt])
    assert label[0, 2] == 1.0
    # A scene without ground truth has no accurate grasp.
    assert not net.refined_accuracy_label(*_proposals(center, width), _zero_refinement(5),
                                          [Grasps.empty()]).any()


def test_confidence_loss_uses_the_refined_label(batch: dict) -> None:
    torch.manual_seed(0)
    for target in ("proposal", "refined"):
        cfg = NetworkConfig.tiny(confidence_target=target)
        net = GPRNet(cfg)
        out = net(batch["points"], batch["groups"], batch["gt"], seed=0)
        props = out["proposals"]
        assert (props.conf_label is None) == (target == "proposal")
        expected = torch.nn.functional.binary_cross_entropy_with_logits(
            out["stage2"]["conf"], props.confidence_target)
        assert torch.isclose(compute_losses(out, batch, cfg)["s2_conf"], expected)
    assert set(props.conf_label.unique().tolist()) <= {0.0, 1.0}


def test_config_validation_and_old_checkpoints_default_to_the_paper_target(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="confidence_target"):
        NetworkConfig.tiny(confidence_target="iou")
    with pytest.raises(ConfigError, match="confidence_width"):
        NetworkConfig.tiny(confidence_width=-1.0)
    with pytest.raises(ConfigError, match="train_parts"):
        TrainConfig(network=NetworkConfig.tiny(), train_parts="stage1")
    stored = NetworkConfig.tiny().to_dict()
    for key in ("confidence_target", "confidence_distance", "confidence_width"):
        del stored[key]  # a checkpoint written before these fields existed
    assert NetworkConfig.from_dict(stored).confidence_target == "proposal"
    refined = NetworkConfig.tiny(confidence_target="refined")
    assert same_network(stored, NetworkConfig.tiny())
    assert not same_network(stored, refined)
    assert same_network(stored, refined, training_too=False)
    assert not same_network(stored, NetworkConfig.tiny(head_width=64), training_too=False)
    assert set(TRAINING_ONLY_KEYS) <= set(NetworkConfig.tiny().to_dict())
    path = save_checkpoint(tmp_path / "r.pt", GPRNet(refined), refined, epoch=1)
    assert load_model(path).config.confidence_target == "refined"


def test_stage2_fine_tuning_freezes_backbone_and_stage1(dataset: Path, tmp_path: Path) -> None:
    base = TrainConfig(network=NetworkConfig.tiny(), epochs=1, batch_size=2, val_fraction=0.25,
                       seed=0, lr=0.02)
    first = train(base, dataset, tmp_path / "a", progress=False)
    tuned_cfg = replace(base, network=NetworkConfig.tiny(confidence_target="refined"),
                        train_parts="stage2", optimizer="adam", lr=1e-3)
    tuned = train(tuned_cfg, dataset, tmp_path / "b", progress=False,
                  init_from=tmp_path / "a" / "last.pt")
    before = first.model.state_dict()
    after = tuned.model.state_dict()
    frozen = [k for k in before if not k.startswith(("s2_encoder.", "s2_head."))]
    learned = [k for k in before if k.startswith(("s2_encoder.", "s2_head."))]
    assert frozen and learned
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in learned)
    assert load_model(tmp_path / "b" / "best.pt").config.confidence_target == "refined"
    # Frozen random weights would be pointless: stage-2-only training needs a start.
    with pytest.raises(ConfigError, match="needs trained weights"):
        train(tuned_cfg, dataset, tmp_path / "d", progress=False)
    # Another architecture cannot start the run, whatever its training-only keys.
    with pytest.raises(CheckpointError, match="another network"):
        train(replace(tuned_cfg, network=NetworkConfig.tiny(head_width=64)), dataset,
              tmp_path / "c", progress=False, init_from=tmp_path / "a" / "last.pt")


def test_trainable_parameters_selects_and_freezes() -> None:
    net = GPRNet(NetworkConfig.tiny())
    chosen = trainable_parameters(net, "stage2")
    s2 = {id(p) for m in (net.s2_encoder, net.s2_head) for p in m.parameters()}
    assert {id(p) for p in chosen} == s2
    assert all(p.requires_grad == (id(p) in s2) for p in net.parameters())
    assert len(trainable_parameters(net, "all")) == len(list(net.parameters()))
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ConfigError, match="train_parts"):
        trainable_parameters(net, "heads")


def test_the_default_min_score_follows_the_model(tmp_path: Path) -> None:
    from gpr_ros.commands.bench import _model_min_score
    from gpr_ros.core.network.config import (
        DEFAULT_MIN_SCORE,
        PROPOSAL_TARGET_MIN_SCORE,
        default_min_score,
    )

    assert default_min_score(NetworkConfig.tiny(confidence_target="refined")) == 0.1
    assert default_min_score(NetworkConfig.tiny()) == PROPOSAL_TARGET_MIN_SCORE == 0.3
    for target, expected in (("refined", DEFAULT_MIN_SCORE), ("proposal", 0.3)):
        cfg = NetworkConfig.tiny(confidence_target=target)
        path = save_checkpoint(tmp_path / f"{target}.pt", GPRNet(cfg), cfg, epoch=1)
        assert _model_min_score(path, 0.77) == expected
    # no model, or a broken one: the fallback (the policies then report the model's problem)
    assert _model_min_score(None, 0.77) == 0.77
    assert _model_min_score(tmp_path / "missing.pt", 0.77) == 0.77
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert _model_min_score(tmp_path / "junk.pt", 0.77) == 0.77
