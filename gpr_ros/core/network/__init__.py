"""The GPR two-stage network (PyTorch): backbone, heads, losses, data, training, inference.

Layout:

- :mod:`.config`: architecture (:class:`NetworkConfig`) and training (:class:`TrainConfig`);
- :mod:`.sampling`: weight-independent grouping (FPS, ball query, 3-NN) precomputed on CPU;
- :mod:`.pointnet2`: PointNet++ MSG set abstraction and feature propagation;
- :mod:`.model`: :class:`GPRNet` (stage 1 heads, proposal decoding and selection, stage 2);
- :mod:`.losses`: focal loss, bin losses (Eq. 5) and stage-2 losses;
- :mod:`.data`: the training dataset over a stored dataset folder;
- :mod:`.checkpoint`: checkpoint format, atomic save, validated load;
- :mod:`.train`: the training loop (single process or DDP with gloo);
- :mod:`.inference`: :class:`GraspDetector` and benchmarks.

Importing this package does not import torch-heavy submodules eagerly beyond what is listed
in ``__all__``; nothing runs at import time.
"""

from __future__ import annotations

from gpr_ros.core.network.errors import CheckpointError, NetworkError

__all__ = ["CheckpointError", "NetworkError"]
