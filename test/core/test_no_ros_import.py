"""The core must import without ROS: no rclpy and no ROS message packages."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

REPO_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("rclpy", "sensor_msgs", "geometry_msgs", "gpr_msgs", "std_msgs")

SCRIPT = """
import importlib
import pkgutil
import sys

import gpr_ros.core

names = ["gpr_ros.core"]
for info in pkgutil.walk_packages(gpr_ros.core.__path__, "gpr_ros.core."):
    importlib.import_module(info.name)
    names.append(info.name)
forbidden = {forbidden!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print("IMPORTED", len(names), " ".join(names))
print("FORBIDDEN", " ".join(loaded))
"""


def test_core_imports_no_ros_modules() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(forbidden=FORBIDDEN)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    imported = lines["IMPORTED"].split()
    for module in ("gpr_ros.core.errors", "gpr_ros.core.grasp", "gpr_ros.core.grasp.grasps",
                   "gpr_ros.core.grasp.angles", "gpr_ros.core.grasp.bins",
                   "gpr_ros.core.grasp.distance", "gpr_ros.core.grasp.gripper"):
        assert module in imported
    forbidden_loaded = result.stdout.split("FORBIDDEN", 1)[1].split()
    assert forbidden_loaded == [], f"core imported ROS modules: {forbidden_loaded}"
