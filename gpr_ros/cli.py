"""The ``gpr-ros`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys


def _cmd_smoke(args: argparse.Namespace) -> int:
    from gpr_ros.ros.smoke import SmokeDemoError, run_smoke_demo
    try:
        return run_smoke_demo(seed=args.seed, timeout=args.timeout)
    except SmokeDemoError as err:
        print(f'gpr-ros smoke: {err}', file=sys.stderr)
        return 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from gpr_ros.core.errors import GprError
    from gpr_ros.ros.demo import DemoConfig, run_demo
    if args.trials < 1:
        print('gpr-ros demo: --trials must be >= 1', file=sys.stderr)
        return 2
    config = DemoConfig(out=args.out, params_file=args.params_file, trials=args.trials,
                        seed=args.seed, protocol=args.protocol, object_set=args.objects,
                        device=args.device, model=args.model, timeout=args.timeout)
    try:
        return run_demo(config)
    except GprError as err:
        print(f'gpr-ros demo: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('gpr-ros demo: interrupted; rerun the same command to resume', file=sys.stderr)
        return 130


def _cmd_info(_args: argparse.Namespace) -> int:
    import gpr_ros
    from gpr_ros.resources import share_dir
    print(f'gpr_ros {gpr_ros.__version__}')
    print(f'share directory: {share_dir()}')
    try:
        import rclpy  # noqa: F401

        import gpr_msgs.msg  # noqa: F401
        print('ROS 2: rclpy and gpr_msgs import')
    except ImportError as err:
        print(f'ROS 2: not available ({err})')
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog='gpr-ros', description='GPR grasp pose refinement: ROS 2 grasping suite tools.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    demo = sub.add_parser(
        'demo', help='simulated clutter removal: every node in its own process over DDS',
        description='Start the simulated world, camera, GPR inference, YuMi executor and '
                    'clutter-removal supervisor as separate ROS 2 processes (as '
                    'sim_clutter_removal.launch.py does), print the progress live and the SR/CR '
                    'table at the end. Rerunning with the same --out resumes.')
    demo.add_argument('--trials', type=int, default=2, help='trials (default 2)')
    demo.add_argument('--seed', type=int, default=0, help='run seed (default 0)')
    demo.add_argument('--protocol', choices=('gpr', 'pile'), default='gpr',
                      help="'gpr': 10 of 20 objects, 15 attempts (paper, default); 'pile'")
    demo.add_argument('--objects', default='novel',
                      help="object set: 'similar', 'novel' (default) or a folder of meshes")
    demo.add_argument('--out', type=Path, default=Path('gpr_demo_results'),
                      help='results folder (default ./gpr_demo_results)')
    demo.add_argument('--params-file', type=Path, default=None,
                      help='node parameters (default: the installed '
                           'config/sim_clutter_removal.yaml)')
    demo.add_argument('--device', default='cpu', help="inference device (default 'cpu')")
    demo.add_argument('--model', default='', help='GPR checkpoint (default: the shipped model)')
    demo.add_argument('--timeout', type=float, default=300.0,
                      help='give up after this many seconds without progress (default 300)')
    demo.set_defaults(func=_cmd_demo)

    smoke = sub.add_parser('smoke', help='ROS interface smoke test over DDS (no simulation)')
    smoke.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    smoke.add_argument('--timeout', type=float, default=30.0,
                       help='seconds to wait for each answer (default 30)')
    smoke.set_defaults(func=_cmd_smoke)

    info = sub.add_parser('info', help='print versions and where package data lives')
    info.set_defaults(func=_cmd_info)

    from gpr_ros.commands import bags, bench, dataset, evaluate, network
    dataset.register(sub)
    network.register(sub)
    evaluate.register(sub)
    bench.register(sub)
    bags.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gpr-ros``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == '__main__':
    sys.exit(main())
