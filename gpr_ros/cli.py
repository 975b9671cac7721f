"""The ``gpr-ros`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args: argparse.Namespace) -> int:
    from gpr_ros.ros.smoke import SmokeDemoError, run_smoke_demo
    try:
        return run_smoke_demo(seed=args.seed, timeout=args.timeout)
    except SmokeDemoError as err:
        print(f'gpr-ros demo: {err}', file=sys.stderr)
        return 1


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

    demo = sub.add_parser('demo', help='run the main demo (for now: the ROS smoke demo over DDS)')
    demo.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    demo.add_argument('--timeout', type=float, default=30.0,
                      help='seconds to wait for each answer (default 30)')
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser('info', help='print versions and where package data lives')
    info.set_defaults(func=_cmd_info)

    from gpr_ros.commands import bench, dataset, evaluate, network
    dataset.register(sub)
    network.register(sub)
    evaluate.register(sub)
    bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gpr-ros``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == '__main__':
    sys.exit(main())
