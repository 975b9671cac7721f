"""Simulated clutter removal (paper Sec. VI-C): protocols, policies, metrics and the runner.

- :mod:`.policies`: the :class:`~.policies.GraspPolicy` interface, GPR (stage 1 / stage 2),
  antipodal and random policies and a name registry;
- :mod:`.protocol`: the paper's protocol (10 of 20 objects, at most 15 attempts) and the
  VGN/GIGA "pile" protocol (5 objects, two consecutive failures end a round), one trial;
- :mod:`.metrics`: SR / CR (GSR / DR) with confidence intervals, NaN on empty denominators;
- :mod:`.runner`: a resumable JSONL attempt log, parallel trials and the result tables.

Grasp execution itself lives in :mod:`gpr_ros.core.sim.gripper`.
"""
