"""Grasp detectors that are not GPR: analytic baselines to compare against and to smoke-test."""
