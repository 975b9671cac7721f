"""``gpr-ros demo``: the simulated clutter removal as a graph of ROS 2 processes over DDS.

Every node of :data:`gpr_ros.ros.graph.SIM_GRAPH` runs in its own process, started with
``--ros-args -r __node:=NAME --params-file config/sim_clutter_removal.yaml -p ...`` exactly as
``sim_clutter_removal.launch.py`` starts it on a full ROS 2 install. This process only watches:
it prints the supervisor's progress (``clutter_removal_supervisor/progress``) as attempts
happen, stops everything when the supervisor finishes, prints the SR/CR table and exits
non-zero if any node dies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import IO, Any

import yaml

from gpr_ros.core.errors import GprError
from gpr_ros.ros.graph import INFERENCE, SIM_GRAPH, SIM_WORLD, SUPERVISOR, NodeSpec, command_line

__all__ = ['DemoConfig', 'DemoError', 'run_demo']


class DemoError(GprError):
    """The demo could not run to its end (a node died, a timeout)."""


@dataclass(frozen=True)
class DemoConfig:
    """What ``gpr-ros demo`` runs.

    :ivar out: results folder (``attempts.jsonl``, ``results.md``, node logs in ``logs/``).
    :ivar params_file: parameters of every node (default: the installed
        ``config/sim_clutter_removal.yaml``).
    :ivar trials: trials to run.
    :ivar seed: run seed.
    :ivar protocol: ``'gpr'`` or ``'pile'``.
    :ivar object_set: ``'similar'``, ``'novel'`` or a folder of meshes.
    :ivar device: inference device.
    :ivar model: GPR checkpoint (``''``: the shipped model).
    :ivar timeout: seconds without any progress after which the demo gives up.
    :ivar extra: further ``node name -> {parameter: value}`` overrides.
    """

    out: Path
    params_file: Path | None = None
    trials: int = 2
    seed: int = 0
    protocol: str = 'gpr'
    object_set: str = 'novel'
    device: str = 'cpu'
    model: str = ''
    timeout: float = 300.0
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Per-node parameter overrides given after the params file."""
        result: dict[str, dict[str, Any]] = {
            SIM_WORLD.name: {'protocol': self.protocol, 'object_set': self.object_set},
            INFERENCE.name: {'device': self.device, **({'model_path': self.model}
                                                         if self.model else {})},
            SUPERVISOR.name: {'results_dir': str(self.out.resolve()),
                              'num_trials': self.trials, 'seed': self.seed,
                              'protocol': self.protocol, 'object_set': self.object_set,
                              'exit_when_done': True},
        }
        for name, params in self.extra.items():
            result.setdefault(name, {}).update(params)
        return result


#: Written next to ``attempts.jsonl``: the node parameters the run was made with.
SETTINGS_NAME = 'demo_settings.json'
#: Supervisor parameters that may change between a run and its resumption.
_RESUMABLE = ('results_dir', 'num_trials', 'exit_when_done')


def run_settings(config: DemoConfig, params: Path) -> dict[str, Any]:
    """What a demo run's results depend on beyond the supervisor's own checks: every node's
    parameters (the file's, then the overrides; not the number of trials or the results
    folder) and the model file's digest.

    :param config: the run.
    :param params: the parameter file.
    :return: JSON-ready settings.
    :raises DemoError: when the parameter file is not YAML of ``node: {ros__parameters}``.
    """
    # heavy (ROS messages, MuJoCo): imported when a demo starts, not with the CLI
    from gpr_ros.core.clutter.runner import model_digest
    from gpr_ros.ros.detection import default_model_path

    try:
        data = yaml.safe_load(params.read_text()) or {}
        nodes = {str(name): dict((body or {}).get('ros__parameters') or {})
                 for name, body in data.items()}
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as err:
        raise DemoError(f'cannot read the parameter file {params}: {err}') from None
    for name, values in config.overrides().items():
        nodes.setdefault(name, {}).update(values)
    for key in _RESUMABLE:
        nodes.get(SUPERVISOR.name, {}).pop(key, None)
    model = str(nodes.get(INFERENCE.name, {}).get('model_path') or '')
    path = Path(model).expanduser() if model else default_model_path()
    return {'parameters': nodes, 'model_sha256': model_digest(path)}


def check_resumable(config: DemoConfig, settings: dict[str, Any]) -> None:
    """Refuse a results folder whose run was made with other node parameters or another
    model (the supervisor checks its protocol, seed and simulation itself), and record the
    settings of a new run.

    :param config: the run.
    :param settings: :func:`run_settings`.
    :raises DemoError: naming what differs.
    """
    from gpr_ros.core.validation import describe_differences

    stamp = config.out / SETTINGS_NAME
    now = json.loads(json.dumps(settings))
    if (config.out / 'attempts.jsonl').exists():
        old = None
        if stamp.is_file():
            try:
                old = json.loads(stamp.read_text())
            except (OSError, ValueError):
                old = None
        if old != now:
            what = (describe_differences(old, now) if isinstance(old, dict)
                    else f'no readable {SETTINGS_NAME} (made by an older version)')
            raise DemoError(f'{config.out} holds a run made with other settings ({what}): '
                            'pass another --out or delete it')
    config.out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(now, indent=1, sort_keys=True) + '\n')


def default_params_file() -> Path:
    """The installed ``config/sim_clutter_removal.yaml``."""
    from gpr_ros.resources import share_dir

    return share_dir() / 'config' / 'sim_clutter_removal.yaml'


def _rate(value: float) -> str:
    return 'n/a' if not math.isfinite(value) else f'{100 * value:.0f}%'


class _Graph:
    """The node processes of one demo run."""

    def __init__(self, specs: Sequence[NodeSpec], config: DemoConfig, params: Path,
                 env: dict[str, str]) -> None:
        self.logs = config.out / 'logs'
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []
        overrides = config.overrides()
        for spec in specs:
            argv = command_line(spec, params, overrides.get(spec.name))
            log = open(self.logs / f'{spec.name}.log', 'wb')  # noqa: SIM115 - closed in stop()
            self._files.append(log)
            self.procs[spec.name] = subprocess.Popen(argv, env=env, stdout=log,
                                                     stderr=subprocess.STDOUT)

    def dead(self, ignore: str = '') -> tuple[str, int] | None:
        """A node (other than ``ignore``) that exited, with its code."""
        for name, proc in self.procs.items():
            if name != ignore and proc.poll() is not None:
                return name, int(proc.returncode)
        return None

    def tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a node's log."""
        path = self.logs / f'{name}.log'
        text = path.read_text(errors='replace') if path.exists() else ''
        return '\n'.join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT every node, then kill what is left after 10 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10.0
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in self._files:
            handle.close()


def run_demo(config: DemoConfig, out: IO[str] = sys.stdout) -> int:
    """Run the simulated clutter removal over DDS and print its progress and result table.

    :param config: what to run.
    :param out: where the report goes.
    :return: 0 when the run finished.
    :raises DemoError: when a node dies or nothing happens for ``config.timeout`` seconds.
    """
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from gpr_msgs.msg import ClutterRemovalProgress

    params = config.params_file if config.params_file is not None else default_params_file()
    if not params.is_file():
        raise DemoError(f'parameter file {params} not found')
    check_resumable(config, run_settings(config, params))
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    print(f'gpr-ros demo: simulated clutter removal, protocol {config.protocol!r}, objects '
          f'{config.object_set!r}, {config.trials} trial(s), seed {config.seed}', file=out)
    print(f'  parameters: {params}', file=out)
    print(f'  results and node logs: {config.out}', file=out)
    t_start = time.monotonic()
    graph = _Graph(SIM_GRAPH, config, params, env)
    print(f'  started {len(graph.procs)} node processes: {", ".join(graph.procs)}', file=out)
    rclpy.init()
    node = rclpy.create_node('gpr_demo_monitor')
    messages: list[ClutterRemovalProgress] = []
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(ClutterRemovalProgress, f'{SUPERVISOR.name}/progress',
                             messages.append, latched)
    try:
        last_activity = time.monotonic()
        seen = 0
        supervisor = graph.procs[SUPERVISOR.name]
        while supervisor.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.2)
            for msg in messages[seen:]:
                _print_progress(msg, out, time.monotonic() - t_start)
                last_activity = time.monotonic()
            seen = len(messages)
            died = graph.dead(ignore=SUPERVISOR.name)
            if died is not None:
                raise DemoError(f'node {died[0]!r} exited with code {died[1]}; its log ends '
                                f'with:\n{graph.tail(died[0])}')
            if time.monotonic() - last_activity > config.timeout:
                raise DemoError(f'no progress for {config.timeout:.0f} s; node logs are in '
                                f'{graph.logs}')
        for _ in range(5):  # the last progress messages
            rclpy.spin_once(node, timeout_sec=0.05)
        for msg in messages[seen:]:
            _print_progress(msg, out, time.monotonic() - t_start)
        code = int(supervisor.returncode)
        if code != 0:
            tail = graph.tail(SUPERVISOR.name)
            hint = (f'\n(--out {config.out} holds another run: pass another --out or delete it)'
                    if 'use another results_dir' in tail else '')
            raise DemoError(f'the supervisor exited with code {code}; its log ends with:\n'
                            f'{tail}{hint}')
    finally:
        node.destroy_node()
        rclpy.shutdown()
        graph.stop()
    table = config.out / 'results.md'
    print(f'\nfinished in {time.monotonic() - t_start:.0f} s', file=out)
    if table.exists():
        print(table.read_text(), file=out)
    return 0


def _print_progress(msg: Any, out: IO[str], elapsed: float) -> None:
    from gpr_msgs.msg import ClutterRemovalProgress as P

    if msg.state == P.STATE_RUNNING and msg.attempts == 0 and not msg.last_outcome:
        print(f'[{elapsed:5.0f} s] trial {msg.trial + 1}/{msg.num_trials}: {msg.last_message} '
              f'({msg.objects_total} objects in the bin)', file=out)
        return
    if msg.last_outcome:
        names = {P.OUTCOME_SUCCESS: 'success', P.OUTCOME_COLLISION: 'collision',
                 P.OUTCOME_SLIP: 'slip', P.OUTCOME_NO_GRASP: 'no grasp',
                 P.OUTCOME_UNREACHABLE: 'unreachable', P.OUTCOME_ERROR: 'error'}
        print(f'[{elapsed:5.0f} s] trial {msg.trial + 1} attempt {msg.attempts}: '
              f'{names.get(msg.last_outcome, "?"):<11} removed {msg.objects_removed}/'
              f'{msg.objects_total}  | total SR {_rate(msg.total_success_rate)} '
              f'CR {_rate(msg.total_completion_rate)}', file=out)
        return
    if msg.last_message:
        print(f'[{elapsed:5.0f} s] {msg.last_message}', file=out)
