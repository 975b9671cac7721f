"""``gpr-ros replay`` and ``gpr-ros record``: grasp detection on rosbag2 bags, and recording.

``replay`` runs detection on every cloud of a bag (in this process, or through a running
``gpr_inference`` node with ``--via-node``) and writes the grasps and markers into a new bag
next to the input messages. ``record`` writes topics of a running system into an MCAP (or
sqlite3) bag. The library side is :mod:`gpr_ros.ros.bags`; this module parses arguments,
shows progress and prints results.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
import signal
import sys
import time
from typing import Any

#: Topics ``gpr-ros record`` writes when none are named: the camera's clouds, the detector's
#: grasps and markers, the clutter-removal supervisor's progress.
RECORD_TOPICS = ('cloud', 'grasps', 'grasp_markers', 'clutter_removal_supervisor/progress')
#: Exit code of an interrupted command (128 + SIGINT).
INTERRUPTED = 130


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``replay`` and ``record`` commands."""
    rep = sub.add_parser(
        'replay', help='run grasp detection on the clouds of a rosbag2 bag',
        description='Read a rosbag2 bag (sqlite3 or MCAP), run grasp detection on every '
                    'sensor_msgs/PointCloud2 of a topic and write a new bag with the input '
                    'messages plus PREFIX/grasps (gpr_msgs/GraspArray) and PREFIX/grasp_markers '
                    '(visualization_msgs/MarkerArray) at each cloud\'s timestamp. Prints the '
                    'latency and grasp count of every cloud and a summary. Interrupting it '
                    '(Ctrl-C) leaves a readable output bag with the clouds done so far.')
    rep.add_argument('bag', type=Path, help='input bag folder, or a .db3/.mcap file')
    rep.add_argument('--topic', default=None,
                     help='PointCloud2 topic (default: the bag\'s only PointCloud2 topic)')
    rep.add_argument('--out', type=Path, default=None,
                     help='output bag folder (default BAG_gpr next to the input; a .mcap or '
                          '.db3 suffix picks the storage)')
    rep.add_argument('--storage', choices=('mcap', 'sqlite3'), default=None,
                     help='output storage (default: as the input)')
    rep.add_argument('--force', action='store_true', help='replace an existing output bag')
    rep.add_argument('--prefix', default='/replay',
                     help='namespace of the output grasp topics (default /replay)')
    rep.add_argument('--copy', choices=('all', 'cloud', 'none'), default='all',
                     help='input messages copied to the output (default all)')
    rep.add_argument('--rate', type=float, default=0.0,
                     help='recorded-rate factor, 1 = as recorded (default 0: as fast as possible)')
    rep.add_argument('--max-messages', type=int, default=None,
                     help='stop after this many clouds (default: all)')
    node = rep.add_argument_group('through a running gpr_inference node (--via-node)')
    node.add_argument('--via-node', action='store_true',
                      help='publish each cloud to a running gpr_inference node and record its '
                           'answer instead of running the model here')
    node.add_argument('--cloud-topic', default='cloud', help='where the node listens (cloud)')
    node.add_argument('--grasps-topic', default='grasps', help='where it answers (grasps)')
    node.add_argument('--markers-topic', default='grasp_markers',
                      help="its marker topic (grasp_markers; '' for none)")
    node.add_argument('--timeout', type=float, default=30.0,
                      help='seconds to wait for each answer (default 30)')
    node.add_argument('--resend', type=float, default=5.0,
                      help='publish a cloud again after this many seconds without an answer '
                           '(the node subscribes best effort; default 5, 0: never)')
    det = rep.add_argument_group('in-process detection (defaults: the gpr_inference node\'s)')
    det.add_argument('--params-file', type=Path, default=None,
                     help='take the detection parameters from the gpr_inference block of this '
                          'ROS parameter file (e.g. config/gpr_inference.yaml); flags win')
    det.add_argument('--model', default=None,
                     help='checkpoint (default: the shipped models/gpr_default.pt)')
    det.add_argument('--device', default=None, help='torch device (default cpu)')
    det.add_argument('--stage', type=int, choices=(1, 2), default=None,
                     help='1: proposals after NMS, 2: refined grasps (default 2)')
    det.add_argument('--max-grasps', type=int, default=None, help='grasps per cloud (20)')
    det.add_argument('--min-score', type=float, default=None,
                     help='drop grasps below (0.3, as the gpr_inference node)')
    det.add_argument('--min-points', type=int, default=None,
                     help='clouds with fewer finite points are rejected (100)')
    det.add_argument('--threads', type=int, default=None, help='torch CPU threads (1)')
    det.add_argument('--seed', type=int, default=None, help='point sampling seed (0)')
    rep.set_defaults(func=_replay)

    rec = sub.add_parser(
        'record', help='record topics of a running system into an MCAP bag',
        description='Subscribe to topics (whatever their types: they are taken from the ROS '
                    'graph once a publisher appears) and write every message as received into '
                    'a rosbag2 bag, MCAP by default. Ctrl-C, SIGTERM or the end of --duration '
                    'closes the bag cleanly.')
    rec.add_argument('--out', type=Path, required=True,
                     help='bag folder (a .mcap or .db3 suffix picks the storage and is dropped '
                          'from the folder name)')
    rec.add_argument('--topics', nargs='+', default=list(RECORD_TOPICS),
                     help=f'topics to record (default: {" ".join(RECORD_TOPICS)})')
    rec.add_argument('--storage', choices=('mcap', 'sqlite3'), default=None,
                     help='storage (default mcap: it survives a crash better than sqlite3)')
    rec.add_argument('--duration', type=float, default=None,
                     help='stop after this many seconds (default: until Ctrl-C)')
    rec.add_argument('--force', action='store_true', help='replace an existing bag')
    rec.set_defaults(func=_record)


# --- replay ------------------------------------------------------------------------------------

def default_output(bag: Path) -> Path:
    """``BAG_gpr`` next to the input (the suffix of a bare storage file is dropped).

    :param bag: the input bag folder or file.
    :return: the output folder.
    """
    base = bag.with_suffix('') if bag.is_file() else bag
    return base.parent / f'{base.name}_gpr'


def _params_from_file(path: Path) -> dict[str, Any]:
    """The ``ros__parameters`` of the gpr_inference block (or the only block) of a file."""
    import yaml

    from gpr_ros.ros.bags import BagError

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BagError(f'cannot read parameter file {path}: {err}') from None
    if not isinstance(data, dict):
        raise BagError(f'{path} is not a ROS parameter file (expected a mapping of node names)')
    blocks = {str(k): v for k, v in data.items() if isinstance(v, dict)
              and isinstance(v.get('ros__parameters'), dict)}
    chosen = [v for k, v in blocks.items() if k.rstrip('/').split('/')[-1] == 'gpr_inference']
    if not chosen and len(blocks) == 1:
        chosen = list(blocks.values())
    if not chosen:
        raise BagError(f'{path} has no gpr_inference block with ros__parameters (blocks: '
                       f'{", ".join(blocks) or "none"})')
    return dict(chosen[0]['ros__parameters'])


def _detection_config(args: argparse.Namespace) -> Any:
    from gpr_ros.ros.detection import DetectionConfig

    names = {f.name for f in fields(DetectionConfig)}
    values: dict[str, Any] = {}
    if args.params_file is not None:
        for key, value in _params_from_file(args.params_file).items():
            if key in names:
                values[key] = tuple(value) if isinstance(value, list) else value
    flags = {'model_path': args.model, 'device': args.device, 'stage': args.stage,
             'max_grasps': args.max_grasps, 'min_score': args.min_score,
             'min_points': args.min_points, 'threads': args.threads, 'seed': args.seed}
    values.update({k: v for k, v in flags.items() if v is not None and k in names})
    return replace(DetectionConfig(), **values) if values else DetectionConfig()


def _in_process_detector(args: argparse.Namespace) -> Any:
    from gpr_ros.ros.detection import DetectionPipeline

    pipeline = DetectionPipeline(_detection_config(args))

    def detect(cloud: Any) -> tuple[Any, Any]:
        grasps = pipeline.detect(cloud)
        return grasps, pipeline.markers(grasps)

    return detect


def _pick_topic(reader: Any, topic: str | None) -> str:
    from gpr_ros.ros.bags import POINTCLOUD2, BagTopicError

    if topic is not None:
        return str(reader.topic(topic, POINTCLOUD2).name)
    clouds = reader.topics_of_type(POINTCLOUD2)
    if len(clouds) == 1:
        return str(clouds[0])
    if not clouds:
        raise BagTopicError(f'bag {reader.path} has no sensor_msgs/msg/PointCloud2 topic; it '
                            f'has: {reader.describe_topics()}')
    raise BagTopicError(f'bag {reader.path} has several PointCloud2 topics '
                        f'({", ".join(clouds)}); choose one with --topic')


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gpr_ros.core.errors import GprError
    from gpr_ros.ros.bags import BagReader, BagWriter, ReplayStep, replay

    prog = 'gpr-ros replay'
    if args.max_messages is not None and args.max_messages < 1:
        print(f'{prog}: --max-messages must be >= 1, got {args.max_messages}', file=sys.stderr)
        return 2
    if not (args.rate >= 0.0) or not args.timeout > 0.0 or not args.resend >= 0.0:
        print(f'{prog}: --rate and --resend must be >= 0 and --timeout > 0', file=sys.stderr)
        return 2
    ros_node = None
    bar = None
    summary_steps: list[ReplayStep] = []
    writer: BagWriter | None = None
    try:
        with BagReader(args.bag) as reader:
            topic = _pick_topic(reader, args.topic)
            out = args.out if args.out is not None else default_output(args.bag)
            # storage: --storage, else the suffix of --out, else the input's
            storage = args.storage or (None if out.suffix in ('.mcap', '.db3')
                                       else reader.storage)
            writer = BagWriter(out, storage, overwrite=args.force)
            if args.via_node:
                import rclpy
                from rclpy.signals import SignalHandlerOptions

                from gpr_ros.ros.bags import NodeDetector

                # Ctrl-C stays a KeyboardInterrupt (handled below: the output is closed)
                # instead of shutting the context down under the replay loop.
                rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
                ros_node = rclpy.create_node('gpr_replay')
                detect = NodeDetector(ros_node, cloud_topic=args.cloud_topic,
                                      grasps_topic=args.grasps_topic,
                                      markers_topic=args.markers_topic, timeout=args.timeout,
                                      resend=args.resend)
                detect.wait_for_node()
            else:
                detect = _in_process_detector(args)
            total = reader.topics[topic].count
            if args.max_messages is not None:
                total = min(total, args.max_messages)
            bar = tqdm(total=total, desc='clouds', unit='cloud', file=sys.stderr,
                       dynamic_ncols=True)

            def on_step(step: ReplayStep) -> None:
                summary_steps.append(step)
                result = (f'{step.num_grasps} grasps' if not step.error
                          else f'failed: {step.error}')
                tqdm.write(f'cloud {step.index + 1}/{step.total}  t={step.timestamp_ns * 1e-9:.3f}'
                           f' s  {step.num_points} points  {result}  '
                           f'{step.latency_s * 1e3:.1f} ms', file=sys.stdout)
                sys.stdout.flush()  # a line per cloud as it is done, also into a pipe
                bar.update(1)

            with writer:
                summary = replay(reader, writer, detect, topic, prefix=args.prefix,
                                 copy=args.copy, rate=args.rate,
                                 max_messages=args.max_messages, on_step=on_step)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        done = len(summary_steps)
        where = (f'; {writer.path} holds the {done} cloud(s) done so far'
                 if writer is not None and writer.counts else '')
        print(f'{prog}: interrupted{where}', file=sys.stderr)
        return INTERRUPTED
    except (GprError, ImportError) as err:
        if bar is not None:
            bar.close()
        kept = ''
        if writer is not None and writer.counts and summary_steps:
            kept = f' ({writer.path} keeps the {len(summary_steps)} clouds done)'
        print(f'{prog}: {err}{kept}', file=sys.stderr)
        return 1
    finally:
        if ros_node is not None:
            import rclpy
            ros_node.destroy_node()
            rclpy.try_shutdown()
    bar.close()
    print(summary.describe())
    written = ', '.join(f'{t} {n}' for t, n in sorted(writer.counts.items()))
    print(f'{writer.path} ({writer.storage}): {written}')
    return 0


# --- record ------------------------------------------------------------------------------------

def _record(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from tqdm import tqdm

    from gpr_ros.core.errors import GprError
    from gpr_ros.ros.bags import BagRecorder, BagWriter

    prog = 'gpr-ros record'
    if args.duration is not None and not args.duration > 0:
        print(f'{prog}: --duration must be > 0 s, got {args.duration}', file=sys.stderr)
        return 2
    try:
        writer = BagWriter(args.out, args.storage, overwrite=args.force).open()
    except GprError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 1
    # SIGTERM ends the recording like Ctrl-C (rclpy may also take it over: either way the loop
    # below ends and the bag is closed).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    rclpy.init(args=[])
    node = rclpy.create_node('gpr_bag_recorder')
    recorder = None
    bar = tqdm(desc=f'recording {writer.path}', unit='msg', file=sys.stderr, dynamic_ncols=True)
    try:
        recorder = BagRecorder(node, writer, args.topics)
        end = None if args.duration is None else time.monotonic() + args.duration
        while rclpy.ok() and (end is None or time.monotonic() < end):
            rclpy.spin_once(node, timeout_sec=0.1)
            total = sum(writer.counts.values())
            if total != bar.n:
                bar.update(total - bar.n)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # the normal way to stop a recording: exit 0 with the bag closed
    except GprError as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 1
    finally:
        bar.close()
        try:
            writer.close()
        finally:
            if recorder is not None:
                recorder.destroy()
            node.destroy_node()
            rclpy.try_shutdown()
            signal.signal(signal.SIGTERM, previous)
    for note in recorder.notes if recorder is not None else []:
        print(f'{prog}: {note}', file=sys.stderr)
    counts = ', '.join(f'{t} {n}' for t, n in sorted(writer.counts.items())) or 'nothing'
    print(f'{writer.path} ({writer.storage}): {counts}')
    missing = recorder.missing if recorder is not None else []
    if missing:
        print(f'never published: {", ".join(missing)}')
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
