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


def bench_dataset() -> None:
    """Dataset generation: annotation seconds per object and scenes per minute (one core)."""
    from pathlib import Path
    import tempfile

    from gpr_ros.core.dataset.generate import (
        GenerationConfig,
        SceneGenerator,
        annotate_model,
        default_cache_dir,
    )
    from gpr_ros.core.dataset.objects import resolve_object_set

    config = GenerationConfig(num_scenes=1)
    cache = default_cache_dir()
    t0 = time.perf_counter()
    models = resolve_object_set('similar', cache, config.objects, config.split_seed)
    print(f'object set (similar, {len(models)} objects, cached if prepared before): '
          f'{time.perf_counter() - t0:.1f} s')
    with tempfile.TemporaryDirectory() as tmp:
        sample = models[:: max(1, len(models) // 6)][:6]
        times = []
        for model in sample:
            t0 = time.perf_counter()
            annotation = annotate_model(model, config, Path(tmp))
            times.append(time.perf_counter() - t0)
            print(f'  annotate {model.name:<28} {times[-1]:6.2f} s  '
                  f'{len(annotation.grasps):4d} grasps')
        print(f'annotation: median {statistics.median(times):.2f} s per object')
    generator = SceneGenerator(config, cache, models)
    times = []
    for index in range(6):
        t0 = time.perf_counter()
        scene = generator.scene(index)
        times.append(time.perf_counter() - t0)
        print(f'  scene {index}: {times[-1]:5.2f} s, {len(scene["object_ids"])} objects, '
              f'{len(scene["grasp_width"])} positive grasps')
    per_scene = statistics.median(times)
    print(f'scenes: median {per_scene:.2f} s -> {60 / per_scene:.1f} scenes/min per worker '
          f'({120 / per_scene:.1f} with --workers 2)')


def bench_network() -> None:
    """GPR inference latency per stage on a 16,384-point cloud, and the speed-up of the
    precomputed CPU grouping over a pure-PyTorch reference (Python-loop FPS, dense distances).

    Uses ``$GPR_BENCH_MODEL`` or the shipped model when present, else random weights (latency
    does not depend on the weights, except through the number of stage-2 proposals).
    """
    import os
    from pathlib import Path

    import torch

    from gpr_ros.core.network.config import NetworkConfig
    from gpr_ros.core.network.inference import GraspDetector, benchmark_reference
    from gpr_ros.core.network.model import GPRNet
    from gpr_ros.resources import share_dir

    candidates = [os.environ.get('GPR_BENCH_MODEL', ''),
                  str(share_dir() / 'models' / 'gpr_default.pt')]
    model_path = next((c for c in candidates if c and Path(c).is_file()), None)
    if model_path:
        detector = GraspDetector.from_checkpoint(model_path)
        print(f'model: {model_path}')
    else:
        torch.manual_seed(0)
        detector = GraspDetector(GPRNet(NetworkConfig.cpu()), model_name='random-cpu')
        print('model: cpu preset with random weights (no trained model found)')
    rng = np.random.default_rng(0)
    cloud = np.column_stack([rng.uniform(-0.15, 0.15, (16_384, 2)),
                             1.3 - rng.uniform(0, 0.08, 16_384)])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        res = benchmark_reference(detector, cloud, repeats=5)
        fast, ref = res['fast'], res['reference']
        stages = ' '.join(f'{k} {fast[k] * 1000:.0f}' for k in
                          ('preprocess', 'backbone', 'stage1', 'nms', 'stage2', 'postprocess'))
        print(f'{threads} thread(s): median total {fast["total"] * 1000:.0f} ms ({stages} ms); '
              f'reference {ref["total"] * 1000:.0f} ms; speed-up {res["speedup_total"]:.1f}x '
              f'(grouping {res["speedup_preprocess"]:.1f}x)')


BENCHMARKS: dict[str, Callable[[], None]] = {
    'geometry': bench_geometry,
    'conversions': bench_conversions,
    'dataset': bench_dataset,
    'network': bench_network,
}


def main() -> None:
    """Parse the benchmark names and run them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help=f'benchmarks to run (default all): {", ".join(BENCHMARKS)}')
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f'unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}')
    for name in args.names or BENCHMARKS:
        print(f'== {name}')
        BENCHMARKS[name]()


if __name__ == '__main__':
    main()
