"""Grasp quality: friction cones, antipodal force closure and the Ferrari–Canny ε metric.

Contact normals are outward surface normals throughout; forces applied by a finger point
into the object (along −n). Modules: :mod:`~gpr_ros.core.quality.force_closure` (friction
cones, the two-contact antipodal test) and :mod:`~gpr_ros.core.quality.ferrari_canny` (the
L1 grasp-wrench-space ε of a soft-finger grasp, the paper's Q(g)).
"""
