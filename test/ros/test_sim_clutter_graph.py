"""The whole simulated clutter-removal graph over real DDS, one process per node.

The supervisor's totals must equal the in-process benchmark's for the same seed (both go
through TrialWorld / TrialBook, the inference node runs the same detector with one thread),
also when the supervisor is killed mid-trial and restarted.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import signal
import subprocess
import time
from typing import Any

import pytest

from gpr_ros.resources import share_dir
from gpr_ros.ros.demo import DemoConfig, _Graph, run_demo
from gpr_ros.ros.graph import SIM_GRAPH, SUPERVISOR, command_line

PARAMS = Path(__file__).resolve().parents[2] / 'config' / 'sim_clutter_removal.yaml'
MODEL = share_dir() / 'models' / 'gpr_default.pt'
SEED, TRIAL = 0, 0

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='no shipped model')


@pytest.fixture(scope='module')
def in_process() -> dict[str, Any]:
    """Trial 0 of the paper's protocol on novel objects, run in this process."""
    import torch

    from gpr_ros.core.clutter.policies import PolicyContext, make_policy
    from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig, select_subset
    from gpr_ros.core.clutter.session import object_pool, run_trial

    threads = torch.get_num_threads()
    config = ClutterConfig(protocol=ProtocolConfig.named('gpr'))
    subset = select_subset(object_pool('novel'), config.protocol, SEED)
    policy = make_policy('gpr', PolicyContext(model_path=MODEL, threads=1))
    try:
        result = run_trial(policy, subset, config, SEED, TRIAL)
    finally:
        torch.set_num_threads(threads)
    return {'attempts': result.attempts, 'successes': result.successes,
            'removed': result.removed, 'objects_total': result.objects_total,
            'ended_by': result.ended_by,
            'outcomes': [r['outcome'] for r in result.records]}


def _trials(path: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """trial_end records and the outcomes of each closed segment."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ends = [r for r in records if r['type'] == 'trial_end']
    outcomes = {e['segment']: [r['outcome'] for r in records if r['type'] == 'attempt'
                               and r['segment'] == e['segment']] for e in ends}
    return ends, outcomes


def _check_equal(end: dict[str, Any], outcomes: list[str], expected: dict[str, Any]) -> None:
    got = {k: end[k] for k in ('attempts', 'successes', 'removed', 'objects_total', 'ended_by')}
    assert got == {k: expected[k] for k in got}
    assert outcomes == expected['outcomes']


def test_demo_reproduces_the_in_process_benchmark(tmp_path: Path,
                                                  in_process: dict[str, Any]) -> None:
    out = io.StringIO()
    code = run_demo(DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=SEED,
                               timeout=120.0), out=out)
    assert code == 0, out.getvalue()
    ends, outcomes = _trials(tmp_path / 'attempts.jsonl')
    assert len(ends) == 1
    _check_equal(ends[0], outcomes[ends[0]['segment']], in_process)
    report = out.getvalue()
    assert 'attempt 1:' in report and '| gpr | 1 |' in report
    assert (tmp_path / 'results.md').is_file() and (tmp_path / 'results.json').is_file()


def test_killed_supervisor_resumes_without_losing_attempts(tmp_path: Path,
                                                           in_process: dict[str, Any]) -> None:
    config = DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=SEED)
    log = tmp_path / 'attempts.jsonl'
    graph = _Graph(SIM_GRAPH, config, PARAMS, dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        while not log.exists() or log.read_text().count('"type":"attempt"') < 3:
            assert time.monotonic() < deadline, 'no attempts logged'
            assert graph.dead() is None, graph.dead()
            time.sleep(0.05)
        graph.procs[SUPERVISOR.name].send_signal(signal.SIGKILL)
        graph.procs[SUPERVISOR.name].wait(timeout=10)
        assert '"type":"trial_end"' not in log.read_text(), 'killed too late: trial ended'
        argv = command_line(SUPERVISOR, PARAMS, config.overrides()[SUPERVISOR.name])
        restarted = subprocess.run(argv, env=dict(os.environ), timeout=180,
                                   capture_output=True, text=True)
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        assert graph.dead(ignore=SUPERVISOR.name) is None
    finally:
        graph.stop()
    ends, outcomes = _trials(log)
    assert len(ends) == 1
    _check_equal(ends[0], outcomes[ends[0]['segment']], in_process)


def test_demo_fails_when_a_node_dies(tmp_path: Path) -> None:
    from gpr_ros.ros.demo import DemoError

    config = DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=SEED, timeout=60.0,
                        extra={'gpr_inference': {'model_path': str(tmp_path / 'missing.pt')}})
    started = time.monotonic()
    with pytest.raises(DemoError, match="node 'gpr_inference' exited with code 2"):
        run_demo(config, out=io.StringIO())
    assert time.monotonic() - started < 60
    assert 'missing.pt' in (tmp_path / 'logs' / 'gpr_inference.log').read_text()


def test_demo_refuses_results_made_with_other_node_parameters(tmp_path: Path) -> None:
    from gpr_ros.ros.demo import SETTINGS_NAME, DemoError, check_resumable, run_settings

    config = DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=SEED)
    settings = run_settings(config, PARAMS)
    assert settings['model_sha256'] and len(settings['model_sha256']) == 16
    assert settings['parameters']['gpr_inference']['pose_passes'] == 2
    assert 'num_trials' not in settings['parameters'][SUPERVISOR.name]  # may grow on resume
    check_resumable(config, settings)  # a new folder: recorded
    assert (tmp_path / SETTINGS_NAME).is_file()
    (tmp_path / 'attempts.jsonl').write_text('{"type":"header"}\n')
    more = DemoConfig(out=tmp_path, params_file=PARAMS, trials=5, seed=SEED)
    check_resumable(more, run_settings(more, PARAMS))  # more trials: resumed
    other = DemoConfig(out=tmp_path, params_file=PARAMS, trials=1, seed=SEED,
                       extra={'gpr_inference': {'pose_passes': 1}})
    with pytest.raises(DemoError, match=r'other settings \(.*pose_passes: 2 -> 1'):
        run_demo(other, out=io.StringIO())  # refused before any node starts
    (tmp_path / SETTINGS_NAME).unlink()
    with pytest.raises(DemoError, match='older version'):
        check_resumable(config, settings)
