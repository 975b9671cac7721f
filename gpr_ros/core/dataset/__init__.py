"""Synthetic grasp dataset generation (paper Sec. IV)."""
