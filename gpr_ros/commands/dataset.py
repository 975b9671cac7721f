"""``gpr-ros dataset``: generate, inspect and picture grasp datasets (paper Sec. IV)."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``dataset`` command group."""
    parser = sub.add_parser('dataset', help='generate and inspect synthetic grasp datasets')
    group = parser.add_subparsers(dest='dataset_command', required=True, metavar='COMMAND')

    gen = group.add_parser(
        'generate', help='generate (or resume) a cluttered-bin dataset',
        description='Drop objects into a simulated bin, view it with a PhoXi-like camera and '
                    'label every point with the grasps that fit (paper Sec. IV). Interrupted '
                    'runs resume where they stopped; the same seed gives the same bytes.')
    gen.add_argument('--out', type=Path, required=True, help='dataset folder')
    gen.add_argument('--scenes', type=int, required=True, help='number of scenes')
    gen.add_argument('--workers', type=int, default=1, help='local worker processes')
    gen.add_argument('--seed', type=int, default=0, help='base seed (default 0)')
    gen.add_argument('--objects', default='similar',
                     help="'similar' (train split), 'novel' (test split) or a folder of "
                          '.obj/.stl/.ply meshes (default similar)')
    gen.add_argument('--units', choices=('m', 'cm', 'mm'), default='m',
                     help='units of the meshes in an --objects folder (default m)')
    gen.add_argument('--points', type=int, default=16384,
                     help='points stored per scene (default 16384, as the paper)')
    gen.add_argument('--objects-per-scene', type=int, nargs=2, metavar=('MIN', 'MAX'),
                     default=None, help='range of objects dropped per scene (default 5 10)')
    gen.add_argument('--scenes-per-shard', type=int, default=10,
                     help='scenes per shard file (default 10)')
    gen.add_argument('--grasp-nms', type=float, default=None, metavar='D',
                     help='NMS threshold on the grasp distance D (Eq. 1) when annotating each '
                          'object: lower keeps denser ground-truth grasps (default 0.02)')
    gen.add_argument('--clean', action='store_true',
                     help='no sensor noise (default: structured-light noise and dropouts)')
    gen.add_argument('--cache', type=Path, default=None,
                     help='object and annotation cache (default $GPR_ROS_CACHE or '
                          '~/.cache/gpr_ros)')
    gen.add_argument('--ray-address', default=None,
                     help='run on a Ray cluster (host:port); the cache must be shared')
    gen.set_defaults(func=_generate)

    stats = group.add_parser('stats', help='label balance and grasp widths (Fig. 6a)')
    stats.add_argument('data', type=Path, help='dataset folder')
    stats.add_argument('--png', type=Path, default=None,
                       help='also save the plots (default DATA/stats.png)')
    stats.set_defaults(func=_stats)

    show = group.add_parser('show', help='render a labelled scene and its grasps to a PNG')
    show.add_argument('data', type=Path, help='dataset folder')
    show.add_argument('--scene', type=int, default=0, help='scene index (default 0)')
    show.add_argument('--png', type=Path, required=True, help='output image')
    show.add_argument('--grasps', type=int, default=25, help='grasps drawn (default 25)')
    show.set_defaults(func=_show)


def _generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from gpr_ros.core.dataset.annotation import AnnotationConfig
    from gpr_ros.core.dataset.generate import GenerationConfig, generate
    from gpr_ros.core.dataset.objects import ObjectConfig
    from gpr_ros.core.errors import GprError
    from gpr_ros.core.sim.camera import NoiseConfig
    from gpr_ros.core.sim.world import SceneConfig

    try:
        scene = SceneConfig()
        if args.objects_per_scene:
            scene = replace(scene, num_objects=tuple(args.objects_per_scene))
        annotation = AnnotationConfig()
        if args.grasp_nms is not None:
            annotation = replace(annotation, nms_threshold=args.grasp_nms)
        config = GenerationConfig(
            num_scenes=args.scenes, seed=args.seed, object_set=str(args.objects),
            num_points=args.points, scenes_per_shard=args.scenes_per_shard, scene=scene,
            noise=NoiseConfig(enabled=not args.clean), objects=ObjectConfig(user_units=args.units),
            annotation=annotation)
    except GprError as err:
        print(f'gpr-ros dataset generate: {err}', file=sys.stderr)
        return 2
    bars: dict[str, tqdm] = {}
    labels = {'objects': 'preparing objects', 'annotate': 'annotating objects',
              'scenes': 'generating scenes'}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=labels[stage], unit='scene'
                                     if stage == 'scenes' else 'obj', dynamic_ncols=True)
        bar.total = max(total, bar.total or 0)
        bar.n = done
        bar.refresh()

    start = time.perf_counter()
    try:
        manifest = generate(config, args.out, workers=args.workers, cache_dir=args.cache,
                            ray_address=args.ray_address, progress=progress)
    except GprError as err:
        print(f'\ngpr-ros dataset generate: {err}', file=sys.stderr)
        return 1
    finally:
        for bar in bars.values():
            bar.close()
    elapsed = time.perf_counter() - start
    skipped = manifest.info.get('skipped_objects', [])
    if skipped:
        print(f'{len(skipped)} unusable mesh(es) skipped (listed in manifest.json):')
        for name, reason in skipped[:10]:
            print(f'  {name}: {reason}')
    print(f'{args.out}: {sum(e["scenes"] for e in manifest.shards.values())} scenes in '
          f'{len(manifest.shards)} shards ({elapsed:.0f} s this run)')
    return 0


def _stats(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gpr_ros.core.dataset.storage import DatasetReader, StorageError
    from gpr_ros.core.dataset.visualize import dataset_stats, plot_stats

    try:
        reader = DatasetReader(args.data)
        stats = dataset_stats(tqdm(reader, total=len(reader), desc='reading', leave=False))
    except StorageError as err:
        print(f'gpr-ros dataset stats: {err}', file=sys.stderr)
        return 1
    print(stats.summary())
    png = args.png or args.data / 'stats.png'
    plot_stats(stats, png)
    print(f'plots: {png}')
    return 0


def _show(args: argparse.Namespace) -> int:
    from gpr_ros.core.dataset.storage import DatasetReader, StorageError
    from gpr_ros.core.dataset.visualize import render_scene_png

    try:
        scene = DatasetReader(args.data).scene(args.scene)
    except (StorageError, IndexError) as err:
        print(f'gpr-ros dataset show: {err}', file=sys.stderr)
        return 1
    drawn = render_scene_png(scene, args.png, max_grasps=args.grasps)
    print(f'{args.png}: scene {args.scene}, {len(scene["points"])} points, {drawn} grasps drawn')
    return 0
