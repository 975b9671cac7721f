"""The clutter-removal supervisor as a real process over DDS.

Parameter validation and the results-log guard run the supervisor alone; the progress,
real-mode and refusal tests run it in the simulated graph (one process per node, as
``gpr-ros demo`` and the launch files start them) on the 'pile' protocol, seed 0, one trial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import time
from typing import Any

import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import spin_until, wait_for_server

from gpr_msgs.msg import ClutterRemovalProgress, SimSceneState
from gpr_msgs.srv import SimResetScene, StartTrial
from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig
from gpr_ros.resources import share_dir
from gpr_ros.ros.demo import DemoConfig, _Graph
from gpr_ros.ros.graph import SIM_GRAPH, SIM_WORLD, SUPERVISOR, command_line

PARAMS = Path(__file__).resolve().parents[2] / 'config' / 'sim_clutter_removal.yaml'
MODEL = share_dir() / 'models' / 'gpr_default.pt'
PROGRESS = f'{SUPERVISOR.name}/progress'
P = ClutterRemovalProgress
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: progress outcome of each attempt outcome written in attempts.jsonl
OUTCOMES = {'success': P.OUTCOME_SUCCESS, 'collision': P.OUTCOME_COLLISION,
            'slip': P.OUTCOME_SLIP, 'no_grasp': P.OUTCOME_NO_GRASP,
            'unreachable': P.OUTCOME_UNREACHABLE}

needs_model = pytest.mark.skipif(not MODEL.is_file(), reason='no shipped model')


# ---------------------------------------------------------------------- helpers


def _run_supervisor(overrides: dict[str, Any], cwd: Path,
                    timeout: float = 40.0) -> subprocess.CompletedProcess[str]:
    argv = command_line(SUPERVISOR, None, overrides)
    return subprocess.run(argv, env=dict(os.environ), cwd=cwd, timeout=timeout,
                          capture_output=True, text=True)


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _one_trial(log: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The only trial of a log: its trial_start, attempt lines and trial_end."""
    records = _records(log)
    ends = [r for r in records if r['type'] == 'trial_end']
    assert len(ends) == 1, records
    end = ends[0]
    start = next(r for r in records if r['type'] == 'trial_start'
                 and r['segment'] == end['segment'])
    attempts = [r for r in records if r['type'] == 'attempt' and r['segment'] == end['segment']]
    return start, attempts, end


@pytest.fixture
def watch(ros_node: Node) -> Iterator[Callable[[type, str], list[Any]]]:
    """Subscribe (reliable, transient local) and collect messages; unsubscribed at the end."""
    subscriptions = []

    def subscribe(msg_type: type, topic: str) -> list[Any]:
        messages: list[Any] = []
        subscriptions.append(ros_node.create_subscription(msg_type, topic, messages.append,
                                                          LATCHED))
        return messages

    yield subscribe
    for sub in subscriptions:
        ros_node.destroy_subscription(sub)


def _spin(node: Node, done: Callable[[], bool], timeout: float, what: str,
          graph: _Graph | None = None) -> None:
    """Spin until ``done()``; fail on timeout or when a node other than the supervisor died."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f'timed out after {timeout:.0f} s: {what}'
        if graph is not None:
            died = graph.dead(ignore=SUPERVISOR.name)
            assert died is None, f'{died} died:\n{graph.tail(died[0])}'
        rclpy.spin_once(node, timeout_sec=0.1)


def _finish(node: Node, graph: _Graph, timeout: float = 50.0) -> int:
    """Wait for the supervisor to exit (exit_when_done), collect late messages, its code."""
    supervisor = graph.procs[SUPERVISOR.name]
    _spin(node, lambda: supervisor.poll() is not None, timeout, 'the supervisor to finish',
          graph)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    return int(supervisor.returncode)


def _check_rates(msg: ClutterRemovalProgress) -> None:
    """SR and CR of a progress message are its own counts' ratios (NaN for 0 / 0)."""
    pairs = ((msg.success_rate, msg.successes, msg.attempts),
             (msg.completion_rate, msg.objects_removed, msg.objects_total),
             (msg.total_success_rate, msg.total_successes, msg.total_attempts),
             (msg.total_completion_rate, msg.total_objects_removed, msg.total_objects_total))
    for value, num, den in pairs:
        if den:
            assert value == pytest.approx(num / den), (value, num, den)
        else:
            assert math.isnan(value), (value, num, den)


def _check_totals(msg: ClutterRemovalProgress, end: dict[str, Any]) -> None:
    """The message reports the trial_end of the (only) trial, as the trial and as the total."""
    assert (msg.total_attempts, msg.total_successes, msg.total_objects_removed,
            msg.total_objects_total) == (end['attempts'], end['successes'], end['removed'],
                                         end['objects_total'])
    assert (msg.attempts, msg.successes, msg.objects_removed, msg.objects_total) == \
        (end['attempts'], end['successes'], end['removed'], end['objects_total'])
    assert msg.trial == end['trial']


def _graph(tmp_path: Path, extra: dict[str, dict[str, Any]]) -> _Graph:
    config = DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=0, protocol='pile',
                        extra=extra)
    return _Graph(SIM_GRAPH, config, PARAMS, dict(os.environ))


# ---------------------------------------------------------------------- parameters


@pytest.mark.parametrize(('overrides', 'expected'), [
    ({'mode': 'bogus', 'results_dir': 'results'}, "mode is 'bogus'"),
    ({'results_dir': ''}, 'results_dir is empty'),
    ({}, 'results_dir is empty'),  # required: no default folder in the working directory
    ({'protocol': 'tidy', 'results_dir': 'results'}, "protocol is 'tidy'"),
    ({'num_trials': 0, 'results_dir': 'results'}, 'num_trials out of range'),
    ({'seed': 'abc', 'results_dir': 'results'}, "expecting type 'INTEGER'"),
], ids=['mode', 'empty-results-dir', 'no-results-dir', 'protocol', 'num-trials', 'seed-type'])
def test_invalid_parameters_exit_2_and_touch_nothing(tmp_path: Path, overrides: dict[str, Any],
                                                     expected: str) -> None:
    # startup_timeout_s: a supervisor that wrongly starts gives up quickly instead of hanging
    proc = _run_supervisor({**overrides, 'startup_timeout_s': 1.0, 'exit_when_done': True},
                           cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert 'invalid parameters' in proc.stderr and expected in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- results log guard


def _simulation(**scene: Any) -> dict[str, Any]:
    """The simulation settings a sim-mode results header records (scene values overridden)."""
    sim = ClutterConfig().to_dict()
    out = {k: sim[k] for k in ('bin', 'scene', 'gripper', 'execution')}
    out['scene'] = {**out['scene'], **scene}
    return out


def _interrupted_log(folder: Path, seed: int, protocol: str,
                     simulation: dict[str, Any] | None = None,
                     rules: dict[str, Any] | None = None) -> bytes:
    """A results folder of a run that crashed mid-write (partial last line)."""
    folder.mkdir()
    lines = [
        {'type': 'header', 'source': 'ros', 'mode': 'sim', 'protocol': protocol, 'seed': seed,
         'object_set': 'novel', 'policy': 'gpr',
         'rules': rules if rules is not None else ProtocolConfig.named(protocol).to_dict(),
         'simulation': simulation if simulation is not None else _simulation()},
        {'type': 'trial_start', 'policy': 'gpr', 'trial': 0, 'segment': 'gpr#0#0',
         'objects': ['a', 'b'], 'poured': 2, 'objects_total': 2},
        {'type': 'attempt', 'policy': 'gpr', 'trial': 0, 'segment': 'gpr#0#0', 'attempt': 0,
         'outcome': 'success', 'counted': True, 'lifted': [1]},
    ]
    data = b''.join(json.dumps(r).encode() + b'\n' for r in lines)
    data += b'{"type":"attempt","policy":"gpr","tri'  # the other run crashed here
    (folder / 'attempts.jsonl').write_bytes(data)
    return data


def test_log_of_another_seed_aborts_with_exit_1(tmp_path: Path) -> None:
    results = tmp_path / 'results'
    before = _interrupted_log(results, seed=7, protocol='pile')
    proc = _run_supervisor({'results_dir': str(results), 'protocol': 'pile', 'seed': 0,
                            'exit_when_done': True, 'startup_timeout_s': 30.0}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert 'clutter removal aborted' in proc.stderr, proc.stderr
    assert 'holds results with seed=7, not 0; use another results_dir' in proc.stderr
    assert (results / 'attempts.jsonl').read_bytes() == before
    assert sorted(p.name for p in results.iterdir()) == ['attempts.jsonl']


def test_log_of_other_physics_aborts_and_names_the_difference(tmp_path: Path) -> None:
    # a results folder made before the clutter simulation's impratio became 10
    results = tmp_path / 'results'
    before = _interrupted_log(results, seed=0, protocol='pile',
                              simulation=_simulation(impratio=1.0))
    proc = _run_supervisor({'results_dir': str(results), 'protocol': 'pile', 'seed': 0,
                            'exit_when_done': True, 'startup_timeout_s': 30.0}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert ('holds results with other simulation settings (scene.impratio: 1.0 -> 10.0); use '
            'another results_dir') in proc.stderr, proc.stderr
    assert (results / 'attempts.jsonl').read_bytes() == before


def test_log_of_other_protocol_rules_aborts_and_names_the_difference(tmp_path: Path) -> None:
    # a results folder made before a view without a feasible grasp was looked at again
    results = tmp_path / 'results'
    rules = ProtocolConfig.named('gpr').to_dict()
    before = _interrupted_log(results, seed=0, protocol='gpr', rules={**rules, 'max_looks': 1})
    proc = _run_supervisor({'results_dir': str(results), 'protocol': 'gpr', 'seed': 0,
                            'exit_when_done': True, 'startup_timeout_s': 30.0}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert 'holds results with other rules settings (max_looks: 1 -> 3)' in proc.stderr, \
        proc.stderr
    assert (results / 'attempts.jsonl').read_bytes() == before


def test_log_of_another_protocol_publishes_aborted(tmp_path: Path, ros_node: Node,
                                                   watch: Callable[[type, str], list[Any]]
                                                   ) -> None:
    results = tmp_path / 'results'
    before = _interrupted_log(results, seed=0, protocol='gpr')
    progress = watch(P, PROGRESS)
    argv = command_line(SUPERVISOR, None, {'results_dir': str(results), 'protocol': 'pile',
                                           'exit_when_done': False})
    proc = subprocess.Popen(argv, env=dict(os.environ), cwd=tmp_path, stderr=subprocess.PIPE,
                            text=True)
    try:
        _spin(ros_node, lambda: any(m.state == P.STATE_ABORTED for m in progress), 30.0,
              'an ABORTED progress message')
        assert proc.poll() is None, 'exit_when_done is false: the node stays up'
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    aborted = progress[-1]
    assert aborted.state == P.STATE_ABORTED
    assert "protocol='gpr', not 'pile'" in aborted.last_message
    assert aborted.protocol == 'pile' and aborted.total_attempts == 0
    assert proc.returncode == 1, stderr
    assert (results / 'attempts.jsonl').read_bytes() == before


def test_own_log_is_repaired_and_kept(tmp_path: Path) -> None:
    results = tmp_path / 'results'
    before = _interrupted_log(results, seed=0, protocol='pile')  # this run's own configuration
    # no graph: the supervisor opens its log, then gives up waiting for the camera
    proc = _run_supervisor({'results_dir': str(results), 'protocol': 'pile', 'seed': 0,
                            'exit_when_done': True, 'startup_timeout_s': 1.0}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "camera trigger service 'phoxi_camera/trigger' is not available" in proc.stderr
    # the partial line of the crash is cut; every complete line stays, the header once
    assert (results / 'attempts.jsonl').read_bytes() == before[:before.rindex(b'\n') + 1]


# ---------------------------------------------------------------------- the simulated graph


@needs_model
def test_progress_follows_the_attempts(tmp_path: Path, ros_node: Node,
                                       watch: Callable[[type, str], list[Any]]) -> None:
    progress = watch(P, PROGRESS)
    graph = _graph(tmp_path, {})
    try:
        code = _finish(ros_node, graph)
    finally:
        graph.stop()
    assert code == 0, graph.tail(SUPERVISOR.name)
    start, attempts, end = _one_trial(tmp_path / 'attempts.jsonl')
    assert progress, 'no progress message'
    for msg in progress:
        _check_rates(msg)
        assert (msg.protocol, msg.policy, msg.num_trials) == ('pile', 'gpr', 1)
        # one trial: the run's totals are the trial's counts in every message
        assert (msg.total_attempts, msg.total_successes, msg.total_objects_removed,
                msg.total_objects_total) == (msg.attempts, msg.successes, msg.objects_removed,
                                             msg.objects_total)

    first = progress[0]
    assert first.state == P.STATE_RUNNING and first.attempts == 0
    assert first.objects_total == start['objects_total'] > 0
    per_attempt = [m for m in progress if m.last_outcome != P.OUTCOME_NONE]
    assert [m.last_outcome for m in per_attempt] == [OUTCOMES[r['outcome']] for r in attempts]
    counted = [m.attempts for m, r in zip(per_attempt, attempts, strict=True) if r['counted']]
    assert counted == list(range(1, end['attempts'] + 1))
    assert end['attempts'] > 0 and len(attempts) >= end['attempts']

    last = progress[-1]
    assert last.state == P.STATE_FINISHED
    _check_totals(last, end)
    # the trial's own last message is its result too (FINISHED, with the trial's counts)
    trial_end = next(m for m in progress if m.last_message.startswith('trial 1/1 ended'))
    assert trial_end.state == P.STATE_FINISHED
    _check_totals(trial_end, end)


@needs_model
def test_real_mode_waits_for_the_operator(tmp_path: Path, ros_node: Node,
                                          watch: Callable[[type, str], list[Any]]) -> None:
    progress = watch(P, PROGRESS)
    scenes = watch(SimSceneState, f'{SIM_WORLD.name}/scene')
    reset = ros_node.create_client(SimResetScene, f'{SIM_WORLD.name}/reset')
    start = ros_node.create_client(StartTrial, f'{SUPERVISOR.name}/start_trial')
    graph = _graph(tmp_path, {SUPERVISOR.name: {'mode': 'real'}})
    try:
        _spin(ros_node, lambda: any(m.state == P.STATE_WAITING_FOR_OBJECTS for m in progress),
              50.0, 'the supervisor to wait for objects', graph)
        assert not any(m.state == P.STATE_RUNNING for m in progress)
        # the operator pours the objects ...
        wait_for_server(ros_node, reset.service_is_ready, timeout=10.0)
        poured = spin_until(ros_node, reset.call_async(SimResetScene.Request(
            seed=0, trial=0, protocol='pile')), timeout=30.0)
        assert poured.success, poured.message
        total = poured.scene.objects_total
        assert total > 0
        # ... and starts the trial
        wait_for_server(ros_node, start.service_is_ready, timeout=10.0)
        reply = spin_until(ros_node, start.call_async(StartTrial.Request(
            objects_total=total, note='poured by the test')))
        again = spin_until(ros_node, start.call_async(StartTrial.Request(objects_total=total)))
        assert reply.success and reply.trial == 0, reply.message
        assert not again.success and again.error_code == StartTrial.Response.ALREADY_RUNNING
        code = _finish(ros_node, graph)
    finally:
        graph.stop()
        ros_node.destroy_client(reset)
        ros_node.destroy_client(start)
    assert code == 0, graph.tail(SUPERVISOR.name)
    records = _records(tmp_path / 'attempts.jsonl')
    assert records[0]['type'] == 'header' and records[0]['mode'] == 'real'
    trial_start, attempts, end = _one_trial(tmp_path / 'attempts.jsonl')
    assert trial_start['objects_total'] == end['objects_total'] == total
    assert trial_start['note'] == 'poured by the test'
    assert end['attempts'] > 0 and len(attempts) >= end['attempts']
    # the supervisor worked on the operator's scene: it did not reset the world itself
    assert scenes and (scenes[-1].seed, scenes[-1].trial) == (0, 0)
    assert scenes[-1].attempts == end['attempts']
    last = progress[-1]
    assert last.state == P.STATE_FINISHED
    _check_totals(last, end)


@needs_model
def test_refused_grasps_end_the_trial_without_an_attempt(
        tmp_path: Path, ros_node: Node, watch: Callable[[type, str], list[Any]]) -> None:
    progress = watch(P, PROGRESS)
    scenes = watch(SimSceneState, f'{SIM_WORLD.name}/scene')
    graph = _graph(tmp_path, {'yumi_executor': {'max_width': 0.001, 'min_width': 0.0}})
    try:
        code = _finish(ros_node, graph)
    finally:
        graph.stop()
    assert code == 0, graph.tail(SUPERVISOR.name)
    _, attempts, end = _one_trial(tmp_path / 'attempts.jsonl')
    assert (end['ended_by'], end['attempts'], end['successes'], end['removed']) == \
        ('no_grasp', 0, 0, 0)
    assert len(attempts) == 1
    view = attempts[0]
    assert view['outcome'] == 'no_grasp' and view['counted'] is False
    assert view['num_grasps'] > 0 and view['grasp_rank'] == -1
    assert view['message'] == 'no feasible grasp proposed'
    # every proposed grasp went to the executor and was refused before any motion
    executor_log = (tmp_path / 'logs' / 'yumi_executor.log').read_text()
    assert executor_log.count('goal refused: grasp width') == view['num_grasps']
    assert scenes and scenes[-1].attempts == 0
    assert all(o.in_bin for o in scenes[-1].objects) and len(scenes[-1].objects) > 0

    no_grasp = [m for m in progress if m.last_outcome == P.OUTCOME_NO_GRASP]
    assert len(no_grasp) == 1
    assert no_grasp[0].attempts == 0 and math.isnan(no_grasp[0].success_rate)
    assert no_grasp[0].completion_rate == 0.0
    # the trial ended by "no grasp" is in the run's totals already (it was not: "n/a")
    assert no_grasp[0].total_objects_total == no_grasp[0].objects_total > 0
    assert no_grasp[0].total_completion_rate == 0.0
    last = progress[-1]
    assert last.state == P.STATE_FINISHED
    assert math.isnan(last.total_success_rate) and last.total_completion_rate == 0.0
    _check_totals(last, end)
