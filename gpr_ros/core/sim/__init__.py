"""MuJoCo simulation: bin worlds, depth camera, (later) the gripper."""
