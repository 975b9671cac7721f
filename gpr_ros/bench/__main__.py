"""Run every benchmark and print its figures: ``python -m gpr_ros.bench [NAME ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
import statistics
import time

import numpy as np


def _timeit(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn`` in seconds (one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_geometry() -> None:
    """Grasp geometry: NMS and distance on realistic sizes."""
    from gpr_ros.core.grasp import Grasps, grasp_nms
    rng = np.random.default_rng(0)
    for n in (2_000, 20_000):
        approach = rng.normal(size=(n, 3))
        g = Grasps(center=rng.uniform(-0.15, 0.15, (n, 3)), approach=approach,
                   closing=np.cross(approach, rng.normal(size=(n, 3))),
                   width=rng.uniform(0, 0.05, n), score=rng.uniform(0, 1, n))
        t = _timeit(lambda g=g: grasp_nms(g, 0.02), repeat=3)
        print(f'grasp_nms            {n:>6} grasps   {t * 1000:8.1f} ms')


def bench_conversions() -> None:
    """PointCloud2 <-> numpy for a 16,384-point and a full PhoXi-size organized cloud."""
    from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
    rng = np.random.default_rng(0)
    for shape in ((16_384, 3), (772, 1032, 3)):
        pts = rng.uniform(0, 1.3, shape).astype(np.float32)
        msg = xyz_to_cloud(pts, frame_id='camera')
        t_to = _timeit(lambda pts=pts: xyz_to_cloud(pts, frame_id='camera'))
        t_from = _timeit(lambda msg=msg: cloud_to_xyz(msg))
        n = int(np.prod(shape[:-1]))
        print(f'xyz_to_cloud         {n:>7} points  {t_to * 1000:8.2f} ms')
        print(f'cloud_to_xyz         {n:>7} points  {t_from * 1000:8.2f} ms')


BENCHMARKS: dict[str, Callable[[], None]] = {
    'geometry': bench_geometry,
    'conversions': bench_conversions,
}


def main() -> None:
    """Parse the benchmark names and run them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('names', nargs='*', choices=[*BENCHMARKS, []], metavar='NAME',
                        help=f'benchmarks to run (default all): {", ".join(BENCHMARKS)}')
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        print(f'== {name}')
        BENCHMARKS[name]()


if __name__ == '__main__':
    main()
