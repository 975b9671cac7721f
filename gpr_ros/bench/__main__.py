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
    """PointCloud2 <-> numpy for a 16,384-point and a full PhoXi-size organized cloud.

    The organized cloud is read twice: all points valid, and with 30 % of them NaN (invalid
    pixels, as a real bin view has: the reader then drops them).
    """
    from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
    rng = np.random.default_rng(0)
    for shape, invalid in (((16_384, 3), 0.0), ((772, 1032, 3), 0.0), ((772, 1032, 3), 0.3)):
        pts = rng.uniform(0, 1.3, shape).astype(np.float32)
        pts[rng.uniform(size=shape[:-1]) < invalid] = np.nan
        msg = xyz_to_cloud(pts, frame_id='camera')
        t_to = _timeit(lambda pts=pts: xyz_to_cloud(pts, frame_id='camera'))
        t_from = _timeit(lambda msg=msg: cloud_to_xyz(msg))
        n = int(np.prod(shape[:-1]))
        note = f', {invalid:.0%} NaN' if invalid else ''
        print(f'xyz_to_cloud         {n:>7} points{note:9} {t_to * 1000:8.2f} ms')
        print(f'cloud_to_xyz         {n:>7} points{note:9} {t_from * 1000:8.2f} ms')


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
    """GPR inference latency per stage on a 16,384-point cloud, and the speed-up over the
    straightforward pure-PyTorch reference computing the same grasps (Python-loop FPS, dense
    distances, channels-first shared MLPs, dense stage-2 crop: ``core/network/reference.py``).

    Freed memory is retained as in the ``gpr_inference`` node (``retain_freed_memory``):
    without it every detection page-faults its large buffers in again (stage 2: 8 vs 4.5 ms).

    Uses ``$GPR_BENCH_MODEL`` or the shipped model when present, else random weights (latency
    does not depend on the weights, except through the number of stage-2 proposals).
    """
    import os
    from pathlib import Path

    import torch

    from gpr_ros.core.network.config import NetworkConfig
    from gpr_ros.core.network.inference import (
        GraspDetector,
        benchmark_reference,
        retain_freed_memory,
    )
    from gpr_ros.core.network.model import GPRNet
    from gpr_ros.resources import share_dir
    from gpr_ros.ros.detection import DetectionConfig

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
    retain_freed_memory(256)  # as the gpr_inference node does at start-up
    default_passes = detector.pose_passes
    node_grasps = DetectionConfig().max_grasps
    # the paper's network (one stage-2 pass) and the default (pose passes), these returning
    # every grasp or the node's default number (further passes refine only the grasps
    # returned); the reference makes the same passes over the same grasps
    settings = [(1, None)] + [(default_passes, g) for g in (None, node_grasps)
                              if default_passes > 1]
    for passes, grasps in settings:
        detector.pose_passes = passes
        for threads in (1, 2):
            torch.set_num_threads(threads)
            res = benchmark_reference(detector, cloud, repeats=5, max_grasps=grasps)
            fast, ref = res['fast'], res['reference']
            stages = ' '.join(f'{k} {fast[k] * 1000:.0f}' for k in
                              ('preprocess', 'backbone', 'stage1', 'nms', 'stage2',
                               'postprocess'))
            returned = 'all grasps' if grasps is None else f'{grasps} grasps'
            print(f'{passes} pose pass(es), {returned}, {threads} thread(s): median total '
                  f'{fast["total"] * 1000:.0f} ms ({stages} ms); reference '
                  f'{ref["total"] * 1000:.0f} ms; speed-up {res["speedup_total"]:.1f}x '
                  f'(grouping {res["speedup_preprocess"]:.1f}x)')
    detector.pose_passes = default_passes


def bench_e2e(repeats: int = 50, warmup: int = 3) -> None:
    """GPR inference node end to end: cloud published -> GraspArray received, over DDS.

    Starts ``gpr_inference`` (``config/gpr_inference.yaml``; nobody subscribes to its markers,
    so it builds none) as its own process, publishes a 16,384-point simulated bin cloud
    (reliable) ``repeats`` times, each time waiting for its ``GraspArray`` (re-sent after 2 s
    when the node's best-effort subscription missed it; the lost attempt is not timed;
    "received" is when the subscription callback gets it), and after each one times bare
    in-process :meth:`GraspDetector.detect` on the same points (one torch thread, as the
    node), so both see the same machine load. Reports medians, the overhead of the node over
    bare detection (target <= 10 %) and its split: outside the pipeline (the median per cloud
    of end to end minus ``timing.total``: DDS both ways, callbacks, queue hand-off) and the
    pipeline itself (``timing.total`` minus bare: cloud conversion, frames, message
    building). On a loaded machine the medians wander by several ms between runs; the split
    shows what is structural. Both sides run as the node does: one torch thread, freed memory
    retained (:func:`retain_freed_memory`, the node's ``malloc_retain_mb``); the GraspArray
    is received by an executor of its own (``rclpy.spin_once(node)`` would add and remove
    the node on the global executor around every wait).

    :param repeats: timed clouds.
    :param warmup: untimed clouds first.
    """
    import os
    import subprocess
    import sys

    from builtin_interfaces.msg import Time
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    import torch
    import trimesh

    from gpr_msgs.msg import GraspArray
    from gpr_ros.core.network.inference import GraspDetector, retain_freed_memory
    from gpr_ros.core.sim.world import BinWorld, SceneObjectSpec
    from gpr_ros.resources import share_dir
    from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
    from gpr_ros.ros.detection import default_model_path

    def part(name: str, mesh: trimesh.Trimesh) -> SceneObjectSpec:
        vertices = np.asarray(mesh.vertices) - mesh.center_mass
        return SceneObjectSpec(name=name, parts=((vertices, np.asarray(mesh.faces)),), mass=0.1)

    world = BinWorld()
    world.drop_objects((part('box_a', trimesh.creation.box((0.06, 0.04, 0.03))),
                        part('box_b', trimesh.creation.box((0.08, 0.03, 0.03))),
                        part('cyl', trimesh.creation.cylinder(radius=0.02, height=0.07))),
                       np.random.default_rng(0))
    scene = world.observe().points
    points = scene[np.random.default_rng(0).permutation(len(scene))[:16_384]]
    points_in = cloud_to_xyz(xyz_to_cloud(points, frame_id='camera_optical_frame'))

    # a DDS domain of its own unless the caller chose one; discovery stays on this machine
    os.environ.setdefault('ROS_DOMAIN_ID', str(101 + os.getpid() % 100))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    params = share_dir() / 'config' / 'gpr_inference.yaml'
    node_proc = subprocess.Popen(
        [sys.executable, '-m', 'gpr_ros.ros.nodes.gpr_inference', '--ros-args',
         '--params-file', str(params), '-r', 'cloud:=bench_cloud', '-r', 'grasps:=bench_grasps',
         '-r', 'grasp_markers:=bench_grasp_markers'], env=dict(os.environ))
    torch.set_num_threads(1)
    retain_freed_memory(256)
    detector = GraspDetector.from_checkpoint(default_model_path(), seed=0)
    rclpy.init()
    node = rclpy.create_node('bench_e2e')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    received: dict[int, GraspArray] = {}
    arrival: dict[int, float] = {}  # perf_counter when the subscription callback got it

    def on_grasps(msg: GraspArray) -> None:
        arrival[msg.header.stamp.sec] = time.perf_counter()
        received[msg.header.stamp.sec] = msg

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(GraspArray, 'bench_grasps',
                             on_grasps, reliable)
    pub = node.create_publisher(PointCloud2, 'bench_cloud', reliable)
    e2e: list[float] = []
    reported: list[float] = []
    bare: list[float] = []
    stages = ('preprocess', 'backbone', 'stage1', 'nms', 'stage2', 'postprocess')
    node_stages: dict[str, list[float]] = {k: [] for k in stages}
    bare_stages: dict[str, list[float]] = {k: [] for k in stages}
    lost = 0
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 or node.count_publishers('bench_grasps') == 0:
            if node_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f'gpr_inference did not come up (exit {node_proc.poll()})')
            executor.spin_once(timeout_sec=0.1)
        for i in range(warmup + repeats):
            sec = i + 1
            msg = xyz_to_cloud(points, frame_id='camera_optical_frame', stamp=Time(sec=sec))
            for _attempt in range(10):  # the best-effort subscription may miss a cloud
                t0 = time.perf_counter()
                pub.publish(msg)
                while sec not in received and time.perf_counter() - t0 < 2.0:
                    executor.spin_once(timeout_sec=0.5)
                if sec in received:
                    break
                lost += 1
            else:
                raise RuntimeError(f'no GraspArray for cloud {sec} in 10 attempts')
            t1 = arrival[sec]
            t2 = time.perf_counter()
            detector.detect(points_in, max_grasps=20)
            t3 = time.perf_counter()
            if i >= warmup:
                e2e.append(t1 - t0)
                reported.append(received[sec].timing.total)
                bare.append(t3 - t2)
                for k in stages:
                    node_stages[k].append(float(getattr(received[sec].timing, k)))
                    bare_stages[k].append(float(detector.last_timing[k]))
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
        node_proc.send_signal(2)
        try:
            node_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node_proc.kill()
    med_e2e, med_node, med_bare = (statistics.median(v) for v in (e2e, reported, bare))
    outside = statistics.median(a - b for a, b in zip(e2e, reported, strict=True))
    grasps = len(received[warmup + repeats].grasps)
    print(f'cloud 16,384 points ({len(msg.data) / 1e3:.0f} kB), {grasps} grasps, '
          f'{repeats} runs ({lost} clouds lost and re-sent), load average '
          f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, medians:')
    print(f'  end to end (published -> GraspArray received) {med_e2e * 1000:7.1f} ms')
    print(f'  node-reported timing.total                   {med_node * 1000:7.1f} ms')
    print(f'  bare GraspDetector.detect in-process          {med_bare * 1000:7.1f} ms')
    print(f'  overhead end to end vs bare: {100 * (med_e2e / med_bare - 1):+.1f} % '
          f'(target <= 10 %)')
    print(f'  outside the pipeline (DDS, callbacks, queue) {outside * 1000:7.1f} ms '
          f'({100 * outside / med_bare:+.1f} %); pipeline vs bare '
          f'{(med_node - med_bare) * 1000:+.1f} ms ({100 * (med_node / med_bare - 1):+.1f} %)')
    print('  per stage, node / bare (ms): ' + ', '.join(
        f'{k} {statistics.median(node_stages[k]) * 1000:.1f} / '
        f'{statistics.median(bare_stages[k]) * 1000:.1f}' for k in stages))


BENCHMARKS: dict[str, Callable[[], None]] = {
    'geometry': bench_geometry,
    'conversions': bench_conversions,
    'dataset': bench_dataset,
    'network': bench_network,
    'e2e': bench_e2e,
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
