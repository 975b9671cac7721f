"""``gpr-ros bench``: simulated benchmarks (clutter removal, paper Sec. VI-C)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``bench`` command group."""
    parser = sub.add_parser('bench', help='simulated grasping benchmarks')
    group = parser.add_subparsers(dest='bench_command', required=True, metavar='COMMAND')
    clutter = group.add_parser(
        'clutter', help='simulated clutter removal (SR / CR, paper Table III)',
        description='Pour objects into a simulated bin and let each policy grasp them out with '
                    'a simulated parallel-jaw gripper. Every attempt is appended to '
                    'OUT/attempts.jsonl; rerunning the same command resumes. Writes '
                    'OUT/results.{md,json,csv,png}.')
    clutter.add_argument('--protocol', choices=('gpr', 'pile'), default='gpr',
                         help="'gpr': 10 of 20 objects, 15 attempts (paper); 'pile': 5 "
                              'objects, two consecutive failures end a round (VGN)')
    clutter.add_argument('--objects', default='novel',
                         help="'similar', 'novel' or a folder of meshes (default novel)")
    clutter.add_argument('--units', choices=('m', 'cm', 'mm'), default='m',
                         help='units of the meshes in an --objects folder (default m)')
    clutter.add_argument('--trials', type=int, default=10, help='trials per policy (default 10)')
    clutter.add_argument('--seed', type=int, default=0, help='run seed (default 0)')
    clutter.add_argument('--policies', default='gpr,stage1,antipodal,random',
                         help='comma-separated names or package.module:factory '
                              '(default gpr,stage1,antipodal,random; also oracle: the '
                              "annotated grasps, the executor's ceiling)")
    clutter.add_argument('--max-grasps', type=int, default=20,
                         help='grasps a policy proposes per view, tried best first (default 20)')
    clutter.add_argument('--min-score', type=float, default=None,
                         help='gpr/stage1 propose no grasp scoring below this (default: '
                              "the model's, 0.1 for the shipped one, chosen on seeds 1 and 2; "
                              "0.3 for models with the paper's confidence target; the paper "
                              "filters at 0.5)")
    clutter.add_argument('--max-looks', type=int, default=None,
                         help='views of the bin before a trial ends with no feasible grasp '
                              '(default: 3 for gpr, 1 for pile)')
    clutter.add_argument('--pose-passes', type=int, default=None,
                         help="gpr: stage-2 passes over the pose (default 2; 1: the paper's "
                              'single refinement)')
    clutter.add_argument('--model', type=Path, default=None,
                         help='GPR checkpoint (default models/gpr_default.pt in the share dir)')
    clutter.add_argument('--device', default='cpu', help='torch device (default cpu)')
    clutter.add_argument('--threads', type=int, default=1,
                         help='torch CPU threads per policy (default 1, as the gpr_inference '
                              'node: float32 results depend on the thread count)')
    clutter.add_argument('--out', type=Path, required=True, help='results folder')
    clutter.add_argument('--workers', type=int, default=1, help='worker processes (default 1)')
    clutter.add_argument('--clean', action='store_true', help='no sensor noise')
    clutter.add_argument('--cache', type=Path, default=None,
                         help='object cache (default $GPR_ROS_CACHE or ~/.cache/gpr_ros)')
    clutter.set_defaults(func=_clutter)
    census = group.add_parser(
        'census', help='what a clutter run left in the bin, and whether anything could pick it',
        description='Replay the trials of one policy from OUT/attempts.jsonl (the logged grasps '
                    'are executed again and must repeat their outcomes; no policy runs), then '
                    'count, for each object left, the annotated grasps that fit where it lies '
                    "and pass the executor's checks, and let the oracle try to clear the bin "
                    'with the attempts the protocol had left. Writes '
                    'OUT/census_POLICY.{md,json}.')
    census.add_argument('--run', type=Path, required=True, nargs='+',
                        help='results folder(s) of gpr-ros bench clutter; with several, '
                             'the pooled census is printed (and written to --out)')
    census.add_argument('--out', type=Path, default=None,
                        help='folder for the pooled census of several runs')
    census.add_argument('--policy', default='gpr', help='whose trials (default gpr)')
    census.add_argument('--no-finish', action='store_true',
                        help='count only; no oracle attempts on the leftovers')
    census.add_argument('--units', choices=('m', 'cm', 'mm'), default='m',
                        help='units of the meshes when the run used a folder (default m)')
    census.add_argument('--cache', type=Path, default=None,
                        help='object cache (default $GPR_ROS_CACHE or ~/.cache/gpr_ros)')
    census.set_defaults(func=_census)


def _default_model() -> Path | None:
    from gpr_ros.resources import share_dir
    try:
        path = share_dir() / 'models' / 'gpr_default.pt'
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def _model_min_score(model: Path | None, fallback: float) -> float:
    """The minimum score that suits a checkpoint's confidence (``fallback`` if unreadable)."""
    if model is None or not model.is_file():
        return fallback
    from gpr_ros.core.errors import GprError
    from gpr_ros.core.network.checkpoint import load_checkpoint
    from gpr_ros.core.network.config import NetworkConfig, default_min_score

    try:
        config = NetworkConfig.from_dict(load_checkpoint(model)["network_config"])
    except GprError:
        return fallback  # the policies report the broken model themselves
    return default_min_score(config)


def _clutter(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gpr_ros.core.clutter.policies import DEFAULT_MIN_SCORE, NETWORK_POLICIES, PolicyContext
    from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig
    from gpr_ros.core.clutter.runner import AttemptLog, run_benchmark, summarize, write_reports
    from gpr_ros.core.dataset.generate import _spec_of, default_cache_dir
    from gpr_ros.core.dataset.objects import ObjectConfig, resolve_object_set
    from gpr_ros.core.errors import GprError
    from gpr_ros.core.sim.camera import NoiseConfig

    prog = 'gpr-ros bench clutter'
    policies = [p.strip() for p in args.policies.split(',') if p.strip()]
    if not policies or args.trials < 1 or args.workers < 1 or args.max_grasps < 1:
        print(f'{prog}: need at least one policy, --trials >= 1, --workers >= 1 and '
              '--max-grasps >= 1', file=sys.stderr)
        return 2
    model = args.model if args.model is not None else _default_model()
    min_score = args.min_score
    if min_score is None:
        min_score = _model_min_score(model, DEFAULT_MIN_SCORE)
    if not 0.0 <= min_score <= 1.0 or (args.max_looks is not None and args.max_looks < 1):
        print(f'{prog}: --min-score must be in [0, 1] and --max-looks >= 1', file=sys.stderr)
        return 2
    from gpr_ros.core.network.config import DEFAULT_POSE_PASSES, MAX_POSE_PASSES
    pose_passes = DEFAULT_POSE_PASSES if args.pose_passes is None else args.pose_passes
    if not 1 <= pose_passes <= MAX_POSE_PASSES:
        print(f'{prog}: --pose-passes must be in [1, {MAX_POSE_PASSES}]', file=sys.stderr)
        return 2
    context = PolicyContext(model_path=model, device=args.device, threads=args.threads,
                            max_grasps=args.max_grasps, min_score=min_score,
                            object_set=str(args.objects), cache_dir=args.cache, units=args.units,
                            pose_passes=pose_passes)

    def check(name: str, ctx: PolicyContext) -> str | None:
        if name in NETWORK_POLICIES and (ctx.model_path is None or not ctx.model_path.is_file()):
            return (f'no GPR model at {ctx.model_path}' if ctx.model_path is not None
                    else 'no GPR model (models/gpr_default.pt missing; pass --model)')
        return None

    try:
        protocol = ProtocolConfig.named(args.protocol)
        if args.max_looks is not None:
            protocol = dataclasses.replace(protocol, max_looks=args.max_looks)
        config = ClutterConfig(protocol=protocol, noise=NoiseConfig(enabled=not args.clean))
        cache = args.cache if args.cache is not None else default_cache_dir()
        models = resolve_object_set(str(args.objects), cache, ObjectConfig(user_units=args.units))
        pool = [_spec_of(m) for m in models]
        for name in policies:
            reason = check(name, context)
            if reason is not None:
                print(f'{prog}: skipping policy {name!r}: {reason}', file=sys.stderr)
        runnable = [p for p in policies if check(p, context) is None]
        bar = tqdm(total=len(runnable) * args.trials, desc='trials', unit='trial')
        stats = {'attempts': 0, 'successes': 0}

        def progress(end: dict) -> None:
            stats['attempts'] += int(end['attempts'])
            stats['successes'] += int(end['successes'])
            bar.set_postfix(policy=end['policy'], SR=f"{stats['successes']}/{stats['attempts']}")
            bar.update(1)

        run = run_benchmark(args.out, pool, policies, args.trials, args.seed, config, context,
                            object_set=str(args.objects), workers=args.workers,
                            progress=progress, check_policy=check)
        bar.update(len(run.skipped))
        bar.close()
        summary = summarize(AttemptLog(args.out / 'attempts.jsonl').read())
        notes = [f'policy {n!r} skipped: {r}' for n, r in run.unavailable.items()]
        write_reports(args.out, summary, notes)
    except GprError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 1
    print((args.out / 'results.md').read_text())
    return 0


def _census(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gpr_ros.core.clutter.census import census_markdown, run_census, write_census
    from gpr_ros.core.clutter.errors import ResultsLogError
    from gpr_ros.core.clutter.policies import PolicyContext, make_policy
    from gpr_ros.core.clutter.runner import AttemptLog
    from gpr_ros.core.clutter.session import object_pool
    from gpr_ros.core.errors import GprError

    prog = 'gpr-ros bench census'
    every = []
    try:
        for run in args.run:
            log_path = run / 'attempts.jsonl'
            if not log_path.is_file():
                raise ResultsLogError(f'no log at {log_path}: run gpr-ros bench clutter first')
            records = AttemptLog(log_path).read()
            header = next((r for r in records if r.get('type') == 'header'), None)
            if header is None:
                raise ResultsLogError(f'{log_path} has no header line')
            object_set = str(header.get('object_set') or '')
            pool = object_pool(object_set, args.cache, args.units)
            oracle = make_policy('oracle', PolicyContext(object_set=object_set,
                                                         cache_dir=args.cache,
                                                         units=args.units))
            with tqdm(desc=f'census {args.policy} {run.name}', unit='trial') as bar:
                censuses = run_census(records, pool, args.policy, oracle,
                                      finish=not args.no_finish,
                                      progress=lambda _c, b=bar: b.update(1))
            write_census(run, args.policy, censuses)
            every.extend(censuses)
        if args.out is not None and len(args.run) > 1:
            write_census(args.out, args.policy, every, len(args.run))
    except GprError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 1
    print(census_markdown(args.policy, every, len(args.run)))
    return 0
