"""Architecture and training configurations of the GPR network (frozen dataclasses).

:class:`NetworkConfig` holds everything needed to rebuild a :class:`~.model.GPRNet`; it is
stored as a plain dict inside every checkpoint (``network_config``), so a checkpoint is
self-describing. Two presets:

- :meth:`NetworkConfig.paper`: the paper's setting (16,384 input points, the PointNet++ MSG
  segmentation backbone of PointRCNN with radii scaled to table-top objects, BatchNorm);
- :meth:`NetworkConfig.cpu`: 4,096 input points and narrower MLPs so that training on 2 CPU
  cores is practical; GroupNorm, because CPU batches are 1-4 scenes and GroupNorm keeps DDP
  replicas identical without SyncBatchNorm.

Lengths are metres, angles radians.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import DEFAULT_BETA, BinConfig, GripperModel
from gpr_ros.core.validation import positive_number as _positive

__all__ = ["LOSS_KEYS", "NetworkConfig", "SALevel", "TrainConfig"]

#: What the stage-2 confidence can be trained against (:attr:`NetworkConfig.confidence_target`).
CONFIDENCE_TARGETS = ("proposal", "refined")
#: NetworkConfig fields that shape training only, not the network or its inference: a
#: checkpoint can start a run (``init_from``) whose config differs from its own in these.
TRAINING_ONLY_KEYS = ("proposals_train", "positive_fraction", "positive_distance",
                      "confidence_target", "confidence_distance", "confidence_width",
                      "focal_alpha", "focal_gamma", "loss_weights")
#: Names of the weighted loss terms (see :mod:`.losses`).
LOSS_KEYS = ("seg", "bin_cls", "bin_res", "s2_conf", "s2_center", "s2_rot", "s2_width")

_NORMS = ("batch", "group")
_OPTIMIZERS = ("sgd", "adam")
#: What :attr:`TrainConfig.train_parts` can name.
TRAIN_PARTS = ("all", "stage2")


def _int_tuple(value: Any, name: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        result = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of integers, got {value!r}") from None
    if any(v < minimum for v in result) or any(
        float(v) != int(v) for v in value if not isinstance(v, bool)
    ):
        raise ConfigError(f"{name} must hold integers >= {minimum}, got {value!r}")
    return result




def _check_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; expected a subset of {sorted(names)}")


#: Stage-2 passes over the pose at inference (:meth:`~.model.GPRNet.refine_poses`; the
#: paper refines once). Chosen on the seed-3 validation scenes (docs/network.md).
DEFAULT_POSE_PASSES = 2
#: Most pose passes accepted.
MAX_POSE_PASSES = 8

#: Confidence below which grasps are not proposed by default: the clutter policies
#: (``PolicyContext.min_score``), the ``gpr_inference`` node and ``DetectionConfig``
#: (``min_score``). It belongs to the shipped model, whose stage-2 confidence estimates the
#: probability that the refined grasp lies within D 0.01 and 5 mm of width of an annotated
#: grasp (``confidence_target="refined"``). Annotations are a subset of the grasps that
#: hold, so a lower score can still lift an object: in simulated clutter removal
#: (comparison v10, seeds 0-2) its attempts scoring 0.1-0.3 lifted their object 97 times
#: in 125; on the unseen seeds 1 and 2, where the threshold was chosen, 0.1 kept SR near
#: 90 % with CR 87-92 % where 0.3 cut CR to 74 % (README, "Simulated clutter removal").
#: Models trained with the paper's confidence target (``"proposal"``) were used at 0.3.
#: The offline evaluation filters at the paper's 0.5.
DEFAULT_MIN_SCORE = 0.1
#: The minimum score for models whose confidence has the paper's target (``"proposal"``):
#: in comparison v7 none of 39 GPR attempts below 0.3 lifted an object.
PROPOSAL_TARGET_MIN_SCORE = 0.3


def default_min_score(config: NetworkConfig) -> float:
    """The minimum score that suits a model's confidence (see :data:`DEFAULT_MIN_SCORE`).

    :param config: the model's network config.
    :return: :data:`DEFAULT_MIN_SCORE` for ``confidence_target="refined"``,
        :data:`PROPOSAL_TARGET_MIN_SCORE` for the paper's ``"proposal"``.
    """
    return (DEFAULT_MIN_SCORE if config.confidence_target == "refined"
            else PROPOSAL_TARGET_MIN_SCORE)


@dataclass(frozen=True)
class SALevel:
    """One PointNet++ multi-scale-grouping set-abstraction level.

    :ivar npoint: number of centres sampled by FPS from the previous level.
    :ivar radii: ball-query radius of each scale, m.
    :ivar nsamples: neighbours per centre of each scale.
    :ivar mlps: shared-MLP output widths of each scale.
    """

    npoint: int
    radii: tuple[float, ...]
    nsamples: tuple[int, ...]
    mlps: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        """Validate and normalise to tuples.

        :raises ConfigError: on inconsistent scales or invalid values.
        """
        object.__setattr__(self, "npoint", _int_tuple([self.npoint], "SALevel.npoint")[0])
        radii = tuple(_positive(r, "SALevel.radii") for r in self.radii)
        nsamples = _int_tuple(self.nsamples, "SALevel.nsamples")
        mlps = tuple(_int_tuple(m, "SALevel.mlps") for m in self.mlps)
        if not radii or not (len(radii) == len(nsamples) == len(mlps)):
            raise ConfigError(
                "SALevel needs one radius, nsample and mlp per scale, got "
                f"{len(radii)} radii, {len(nsamples)} nsamples and {len(mlps)} mlps"
            )
        if any(len(m) == 0 for m in mlps):
            raise ConfigError("SALevel.mlps must not hold an empty MLP")
        object.__setattr__(self, "radii", radii)
        object.__setattr__(self, "nsamples", nsamples)
        object.__setattr__(self, "mlps", mlps)

    @property
    def out_channels(self) -> int:
        """Feature width after concatenating the scales."""
        return sum(m[-1] for m in self.mlps)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict.

        :return: ``{"npoint", "radii", "nsamples", "mlps"}`` with lists.
        """
        return {
            "npoint": self.npoint,
            "radii": list(self.radii),
            "nsamples": list(self.nsamples),
            "mlps": [list(m) for m in self.mlps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SALevel:
        """Build from :meth:`to_dict` output.

        :param data: the mapping.
        :return: the level.
        :raises ConfigError: on missing, unknown or invalid keys.
        """
        _check_keys(data, cls, "SALevel")
        try:
            return cls(
                data["npoint"],
                tuple(data["radii"]),
                tuple(data["nsamples"]),
                tuple(tuple(m) for m in data["mlps"]),
            )
        except KeyError as err:
            raise ConfigError(f"SALevel is missing key {err}") from None
        except TypeError as err:
            raise ConfigError(f"invalid SALevel: {err}") from None


def _paper_levels() -> tuple[SALevel, ...]:
    return (
        SALevel(4096, (0.01, 0.02), (16, 32), ((16, 16, 32), (32, 32, 64))),
        SALevel(1024, (0.02, 0.04), (16, 32), ((64, 64, 128), (64, 96, 128))),
        SALevel(256, (0.04, 0.08), (16, 32), ((128, 196, 256), (128, 196, 256))),
        SALevel(64, (0.08, 0.16), (16, 32), ((256, 256, 512), (256, 384, 512))),
    )


def _cpu_levels() -> tuple[SALevel, ...]:
    return (
        SALevel(1024, (0.01, 0.02), (8, 16), ((16, 32), (16, 32))),
        SALevel(256, (0.02, 0.04), (8, 16), ((64, 64), (64, 64))),
        SALevel(64, (0.04, 0.08), (8, 16), ((128, 128), (128, 128))),
        SALevel(16, (0.08, 0.16), (8, 16), ((128, 128), (128, 128))),
    )


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of :class:`~.model.GPRNet` (travels inside every checkpoint).

    :ivar num_points: points fed to the network per scene (the paper: 16,384).
    :ivar sa_levels: set-abstraction levels, input to deepest.
    :ivar fp_mlps: feature-propagation MLP widths, one per SA level, listed from the level
        nearest the input to the deepest (PointRCNN order); the first one's last width is the
        per-point feature width C.
    :ivar norm: ``"batch"`` or ``"group"`` normalisation in the shared MLPs.
    :ivar group_norm_groups: groups of GroupNorm (channel counts must be divisible).
    :ivar head_width: hidden width of the stage-1 segmentation and regression heads.
    :ivar bins: the :class:`~gpr_ros.core.grasp.BinConfig` of the stage-1 regression.
    :ivar gripper: the :class:`~gpr_ros.core.grasp.GripperModel` (stage-2 crop, widths).
    :ivar proposal_threshold: minimum sigmoid score of a point to make an inference proposal.
    :ivar pre_nms_proposals: the highest-scoring points kept before NMS.
    :ivar nms_threshold: NMS threshold on the grasp distance D.
    :ivar distance_beta: the weights β of D.
    :ivar proposals_train: proposals sampled per scene for stage-2 training (paper: 256).
    :ivar proposals_test: proposals refined per scene at inference (paper: 100).
    :ivar positive_fraction: the largest fraction of positives among the training proposals.
    :ivar positive_distance: a proposal is positive if D to its nearest GT grasp is below this.
    :ivar confidence_target: what the stage-2 confidence is trained to predict.
        ``"proposal"`` (the paper's reading): the proposal's label, D < ``positive_distance``
        before refinement. ``"refined"``: the *refined* grasp is accurate, i.e. its D to the
        nearest ground-truth grasp is below ``confidence_distance`` and its width is within
        ``confidence_width`` of that grasp's (the quality the evaluation and a robot care
        about; labels follow the refinement as it trains). Training only: the network is the
        same, so a checkpoint can be fine-tuned from one target to the other.
    :ivar confidence_distance: D below which a refined grasp counts as accurate (``"refined"``).
    :ivar confidence_width: width error below which it counts as accurate, m (``"refined"``).
    :ivar enlarge: ε, margin added on every side of the closing region of the stage-2 crop, m.
    :ivar crop_points: points per stage-2 crop (sampled with replacement when fewer).
    :ivar stage2_mlp: widths of the stage-2 point encoder's shared MLP.
    :ivar stage2_head: hidden width of the stage-2 heads.
    :ivar center_scale: normalisation of the stage-2 centre residual target, m.
    :ivar width_scale: normalisation of the stage-2 width residual target, m.
    :ivar focal_alpha: α of the focal loss.
    :ivar focal_gamma: γ of the focal loss.
    :ivar loss_weights: weights of the named loss terms (see :mod:`.losses`).
    """

    num_points: int = 4096
    sa_levels: tuple[SALevel, ...] = field(default_factory=_cpu_levels)
    fp_mlps: tuple[tuple[int, ...], ...] = ((64, 64), (64, 64), (128, 128), (128, 128))
    norm: str = "group"
    group_norm_groups: int = 8
    head_width: int = 64
    bins: BinConfig = field(default_factory=BinConfig)
    gripper: GripperModel = field(default_factory=GripperModel)
    proposal_threshold: float = 0.3
    pre_nms_proposals: int = 1024
    nms_threshold: float = 0.02
    distance_beta: tuple[float, float, float] = DEFAULT_BETA
    proposals_train: int = 64
    proposals_test: int = 100
    positive_fraction: float = 0.5
    positive_distance: float = 0.02
    confidence_target: str = "proposal"
    confidence_distance: float = 0.01
    confidence_width: float = 0.005
    enlarge: float = 0.01
    crop_points: int = 64
    stage2_mlp: tuple[int, ...] = (64, 128)
    stage2_head: int = 64
    center_scale: float = 0.01
    width_scale: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    loss_weights: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(LOSS_KEYS, 1.0)
    )

    def __post_init__(self) -> None:
        """Validate every field.

        :raises ConfigError: on invalid values or inconsistent sizes.
        """
        num_points = _int_tuple([self.num_points], "num_points")[0]
        object.__setattr__(self, "num_points", num_points)
        levels = tuple(self.sa_levels)
        if not levels or not all(isinstance(lv, SALevel) for lv in levels):
            raise ConfigError("sa_levels must be a non-empty sequence of SALevel")
        previous = num_points
        for i, level in enumerate(levels):
            if level.npoint > previous:
                raise ConfigError(
                    f"sa_levels[{i}].npoint = {level.npoint} exceeds the {previous} points of "
                    "the previous level"
                )
            previous = level.npoint
        object.__setattr__(self, "sa_levels", levels)
        fp = tuple(_int_tuple(m, "fp_mlps") for m in self.fp_mlps)
        if len(fp) != len(levels) or any(len(m) == 0 for m in fp):
            raise ConfigError(
                f"fp_mlps must hold one non-empty MLP per SA level ({len(levels)}), got {fp}"
            )
        object.__setattr__(self, "fp_mlps", fp)
        if self.norm not in _NORMS:
            raise ConfigError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        for name in ("group_norm_groups", "head_width", "pre_nms_proposals", "proposals_train",
                     "proposals_test", "crop_points", "stage2_head"):
            object.__setattr__(self, name, _int_tuple([getattr(self, name)], name)[0])
        object.__setattr__(self, "stage2_mlp", _int_tuple(self.stage2_mlp, "stage2_mlp"))
        if not self.stage2_mlp:
            raise ConfigError("stage2_mlp must not be empty")
        if self.norm == "group":
            widths = [w for lv in levels for m in lv.mlps for w in m]
            widths += [w for m in fp for w in m] + [self.head_width, *self.stage2_mlp]
            bad = sorted({w for w in widths if w % self.group_norm_groups})
            if bad:
                raise ConfigError(
                    f"with norm='group' every MLP width must be divisible by "
                    f"group_norm_groups={self.group_norm_groups}, got {bad}"
                )
        if not isinstance(self.bins, BinConfig):
            raise ConfigError(f"bins must be a BinConfig, got {type(self.bins).__name__}")
        if not isinstance(self.gripper, GripperModel):
            raise ConfigError(f"gripper must be a GripperModel, got {type(self.gripper).__name__}")
        for name in ("proposal_threshold", "positive_fraction"):
            value = _positive(getattr(self, name), name, allow_zero=True)
            if value > 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, value)
        for name in ("nms_threshold", "enlarge"):
            object.__setattr__(self, name, _positive(getattr(self, name), name, True))
        if self.confidence_target not in CONFIDENCE_TARGETS:
            raise ConfigError(f"confidence_target must be one of {CONFIDENCE_TARGETS}, "
                              f"got {self.confidence_target!r}")
        for name in ("positive_distance", "confidence_distance", "confidence_width",
                     "center_scale", "width_scale", "focal_gamma"):
            object.__setattr__(self, name, _positive(getattr(self, name), name,
                                                     name == "focal_gamma"))
        alpha = _positive(self.focal_alpha, "focal_alpha", allow_zero=True)
        if alpha > 1.0:
            raise ConfigError(f"focal_alpha must be in [0, 1], got {alpha}")
        object.__setattr__(self, "focal_alpha", alpha)
        beta = tuple(_positive(b, "distance_beta", True) for b in self.distance_beta)
        if len(beta) != 3:
            raise ConfigError(f"distance_beta must hold 3 weights, got {self.distance_beta!r}")
        object.__setattr__(self, "distance_beta", beta)
        weights = dict(self.loss_weights)
        unknown = sorted(set(weights) - set(LOSS_KEYS))
        if unknown:
            raise ConfigError(f"unknown loss_weights key(s) {unknown}; expected {LOSS_KEYS}")
        defaults = dict.fromkeys(LOSS_KEYS, 1.0)
        defaults.update({k: _positive(v, f"loss_weights[{k}]", True) for k, v in weights.items()})
        object.__setattr__(self, "loss_weights", {k: defaults[k] for k in LOSS_KEYS})

    @property
    def feature_channels(self) -> int:
        """Width C of the per-point backbone features."""
        return self.fp_mlps[0][-1]

    @classmethod
    def cpu(cls, **overrides: Any) -> NetworkConfig:
        """The CPU preset (see the module docstring).

        :param overrides: fields to replace.
        :return: the config.
        """
        return replace(cls(), **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> NetworkConfig:
        """The paper's setting (16,384 points, PointRCNN-style MSG backbone, 256/100 proposals).

        :param overrides: fields to replace.
        :return: the config.
        """
        base = cls(
            num_points=16384,
            sa_levels=_paper_levels(),
            fp_mlps=((128, 128), (256, 256), (512, 512), (512, 512)),
            norm="batch",
            head_width=128,
            proposals_train=256,
            proposals_test=100,
            pre_nms_proposals=4096,
            crop_points=64,
            stage2_mlp=(128, 128, 256),
            stage2_head=256,
        )
        return replace(base, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> NetworkConfig:
        """A very small network for tests (512 points, 3 levels).

        :param overrides: fields to replace.
        :return: the config.
        """
        base = cls(
            num_points=512,
            sa_levels=(
                SALevel(128, (0.01, 0.03), (8, 8), ((16,), (16,))),
                SALevel(32, (0.03, 0.06), (8, 8), ((32,), (32,))),
                SALevel(8, (0.06, 0.15), (8, 8), ((32,), (32,))),
            ),
            fp_mlps=((32,), (32,), (32,)),
            head_width=32,
            proposals_train=16,
            proposals_test=10,
            pre_nms_proposals=128,
            crop_points=16,
            stage2_mlp=(32,),
            stage2_head=32,
        )
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain, JSON-compatible dict.

        :return: every field; nested configs as dicts, tuples as lists.
        """
        return {
            "num_points": self.num_points,
            "sa_levels": [lv.to_dict() for lv in self.sa_levels],
            "fp_mlps": [list(m) for m in self.fp_mlps],
            "norm": self.norm,
            "group_norm_groups": self.group_norm_groups,
            "head_width": self.head_width,
            "bins": self.bins.to_dict(),
            "gripper": self.gripper.to_dict(),
            "proposal_threshold": self.proposal_threshold,
            "pre_nms_proposals": self.pre_nms_proposals,
            "nms_threshold": self.nms_threshold,
            "distance_beta": list(self.distance_beta),
            "proposals_train": self.proposals_train,
            "proposals_test": self.proposals_test,
            "positive_fraction": self.positive_fraction,
            "positive_distance": self.positive_distance,
            "confidence_target": self.confidence_target,
            "confidence_distance": self.confidence_distance,
            "confidence_width": self.confidence_width,
            "enlarge": self.enlarge,
            "crop_points": self.crop_points,
            "stage2_mlp": list(self.stage2_mlp),
            "stage2_head": self.stage2_head,
            "center_scale": self.center_scale,
            "width_scale": self.width_scale,
            "focal_alpha": self.focal_alpha,
            "focal_gamma": self.focal_gamma,
            "loss_weights": dict(self.loss_weights),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Build from :meth:`to_dict` output; missing keys take the CPU preset's defaults.

        :param data: the mapping.
        :return: the config.
        :raises ConfigError: on unknown keys or invalid values.
        """
        _check_keys(data, cls, "NetworkConfig")
        kwargs: dict[str, Any] = dict(data)
        try:
            if "sa_levels" in kwargs:
                kwargs["sa_levels"] = tuple(SALevel.from_dict(d) for d in kwargs["sa_levels"])
            if "fp_mlps" in kwargs:
                kwargs["fp_mlps"] = tuple(tuple(m) for m in kwargs["fp_mlps"])
            if "bins" in kwargs:
                kwargs["bins"] = BinConfig.from_dict(kwargs["bins"])
            if "gripper" in kwargs:
                kwargs["gripper"] = GripperModel.from_dict(kwargs["gripper"])
            for key in ("distance_beta", "stage2_mlp"):
                if key in kwargs:
                    kwargs[key] = tuple(kwargs[key])
        except TypeError as err:
            raise ConfigError(f"invalid NetworkConfig: {err}") from None
        return cls(**kwargs)


def same_network(stored: Mapping[str, Any], config: NetworkConfig,
                 training_too: bool = True) -> bool:
    """Whether a checkpoint's stored ``network_config`` describes ``config``'s network.

    Both are normalised (keys a stored dict lacks take their defaults, as when loading).

    :param stored: a checkpoint's ``network_config``.
    :param config: the config to compare with.
    :param training_too: compare the :data:`TRAINING_ONLY_KEYS` as well (resuming a run);
        ``False``: only what shapes the network and its inference (starting a new run from
        the checkpoint's weights).
    :return: True when they agree.
    :raises ConfigError: when ``stored`` is not a valid network config.
    """
    a = NetworkConfig.from_dict(stored).to_dict()
    b = config.to_dict()
    if not training_too:
        for key in TRAINING_ONLY_KEYS:
            a.pop(key)
            b.pop(key)
    return a == b


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`~.train.train` trains.

    The paper trains with a learning rate of 0.02 divided by 10 when the error plateaus; here
    that is SGD with momentum and :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` on the
    validation loss. With ``optimizer="adam"`` use a smaller ``lr`` (e.g. 1e-3); the same
    plateau rule applies. ``lr_drop_epochs`` replaces the plateau rule by a fixed step
    schedule (session 16 tried Adam /10 from epoch 21, where the plateau rule had fired for
    the shipped model: a lower validation loss, not better grasps; models/MODEL_CARD.md).

    :ivar network: the architecture.
    :ivar epochs: total epochs.
    :ivar batch_size: scenes per step and process.
    :ivar optimizer: ``"sgd"`` (momentum) or ``"adam"``.
    :ivar lr: initial learning rate.
    :ivar momentum: SGD momentum.
    :ivar weight_decay: L2 weight decay.
    :ivar plateau_factor: LR multiplier on a plateau (paper: 0.1).
    :ivar plateau_patience: epochs without validation improvement before reducing the LR.
    :ivar lr_drop_epochs: epochs (1-based, increasing, 2..``epochs``) from which the LR is
        multiplied by ``plateau_factor`` whatever the validation loss does; when given, the
        plateau rule is off. Empty (default): the plateau rule.
    :ivar min_lr: lower bound of the LR under the plateau rule (a step schedule divides as
        many times as it lists).
    :ivar grad_clip: maximum gradient norm (0: no clipping).
    :ivar val_fraction: fraction of the scenes held out for validation (at least one scene).
    :ivar seed: seed of every random choice of the run.
    :ivar num_workers: DataLoader worker processes (0: load in the main process).
    :ivar augment: random rotation about the camera's view axis during training.
    :ivar max_steps_per_epoch: stop an epoch after this many steps (0: the whole dataset).
    :ivar train_parts: ``"all"``, or ``"stage2"``: the backbone and the stage-1 heads are
        frozen and only the stage-2 network learns (fine-tuning the refinement or its
        confidence from a trained model; a step costs about half as much).
    """

    network: NetworkConfig = field(default_factory=NetworkConfig.cpu)
    epochs: int = 30
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    lr_drop_epochs: tuple[int, ...] = ()
    min_lr: float = 1e-5
    grad_clip: float = 10.0
    val_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 0
    augment: bool = True
    max_steps_per_epoch: int = 0
    train_parts: str = "all"

    def __post_init__(self) -> None:
        """Validate.

        :raises ConfigError: on invalid values.
        """
        if not isinstance(self.network, NetworkConfig):
            raise ConfigError(f"network must be a NetworkConfig, got {type(self.network)}")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("plateau_patience", 0),
                              ("seed", 0), ("num_workers", 0), ("max_steps_per_epoch", 0)):
            object.__setattr__(self, name, _int_tuple([getattr(self, name)], name, minimum)[0])
        drops = _int_tuple(self.lr_drop_epochs, "lr_drop_epochs", 2)
        if (any(b <= a for a, b in zip(drops, drops[1:], strict=False))
                or any(e > self.epochs for e in drops)):
            raise ConfigError(f"lr_drop_epochs must increase and lie in 2..epochs "
                              f"({self.epochs}), got {self.lr_drop_epochs!r}")
        object.__setattr__(self, "lr_drop_epochs", drops)
        if self.train_parts not in TRAIN_PARTS:
            raise ConfigError(f"train_parts must be one of {TRAIN_PARTS}, "
                              f"got {self.train_parts!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr", "plateau_factor"):
            object.__setattr__(self, name, _positive(getattr(self, name), name))
        for name in ("momentum", "weight_decay", "min_lr", "grad_clip", "val_fraction"):
            object.__setattr__(self, name, _positive(getattr(self, name), name, True))
        if self.val_fraction >= 1.0 or self.plateau_factor >= 1.0:
            raise ConfigError("val_fraction and plateau_factor must be < 1")
        object.__setattr__(self, "augment", bool(self.augment))

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict (the network as a nested dict).

        :return: every field.
        """
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["network"] = self.network.to_dict()
        out["lr_drop_epochs"] = list(self.lr_drop_epochs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output; missing keys take their defaults.

        :param data: the mapping.
        :return: the config.
        :raises ConfigError: on unknown keys or invalid values.
        """
        _check_keys(data, cls, "TrainConfig")
        kwargs = dict(data)
        if "network" in kwargs:
            kwargs["network"] = NetworkConfig.from_dict(kwargs["network"])
        return cls(**kwargs)

