"""rosbag2 reading/writing, replay through detection and recording (gpr_ros.ros.bags, CLI).

Bags are written with rosbags and checked with real rclpy deserialisation and against the type
hashes rosidl installed; replays are compared with direct inference on the same clouds.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from ros_helpers import spin_while, start_process, stop_process
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from gpr_msgs.msg import ClutterRemovalProgress, GraspArray
from gpr_ros.core.network.synthetic import synthetic_scene
from gpr_ros.ros.bags import (
    GRASP_ARRAY,
    MARKER_ARRAY,
    POINTCLOUD2,
    BagCorruptError,
    BagError,
    BagExistsError,
    BagReader,
    BagTimeoutError,
    BagTopicError,
    BagTypeError,
    BagWriter,
    MessageTypes,
    NodeDetector,
    ReplayStep,
    message_class,
    replay,
    resolve_bag_path,
    type_name_of,
)
from gpr_ros.ros.conversions import array_msg_to_grasps, xyz_to_cloud
from gpr_ros.ros.detection import DetectionConfig, DetectionError, DetectionPipeline

SHARE = Path(sys.prefix) / 'share'
FRAME = 'camera_optical_frame'
NUM_SCENES = 3
#: the cloud after the scenes has too few points: detection rejects it
TOO_FEW = 40


def _clouds() -> list[PointCloud2]:
    clouds = []
    for i in range(NUM_SCENES):
        points = synthetic_scene(np.random.default_rng([11, i]), num_points=2048)['points']
        clouds.append(xyz_to_cloud(points, frame_id=FRAME, stamp=Time(sec=1000 + i, nanosec=5)))
    tiny = np.random.default_rng(1).uniform(-0.1, 0.1, (TOO_FEW, 3))
    clouds.append(xyz_to_cloud(tiny, frame_id=FRAME, stamp=Time(sec=1000 + NUM_SCENES)))
    return clouds


def _write_input(path: Path, storage: str, clouds: list[PointCloud2]) -> Path:
    with BagWriter(path, storage) as writer:
        for i, cloud in enumerate(clouds):
            t = (1000 + i) * 1_000_000_000 + 7
            writer.write('/note', String(data=f'before cloud {i}'), t - 1)
            writer.write('/camera/cloud', cloud, t)
    return path


@pytest.fixture(scope='module')
def clouds() -> list[PointCloud2]:
    """Simulated scene clouds (and one too small to detect in)."""
    return _clouds()


@pytest.fixture(scope='module')
def pipeline() -> DetectionPipeline:
    """The in-process detector with the node's defaults and the shipped model."""
    return DetectionPipeline(DetectionConfig())


@pytest.fixture(scope='module')
def bags(tmp_path_factory: pytest.TempPathFactory, clouds: list[PointCloud2]) -> dict[str, Path]:
    """Bags with the clouds on /camera/cloud and a String topic /note, by storage."""
    root = tmp_path_factory.mktemp('in')
    return {s: _write_input(root / f'scenes_{s}', s, clouds) for s in ('mcap', 'sqlite3')}


@pytest.fixture(params=['mcap', 'sqlite3'])
def input_bag(request: pytest.FixtureRequest, bags: dict[str, Path]) -> Path:
    """The input bag in each storage."""
    return bags[request.param]


def _installed_hash(type_name: str) -> str:
    pkg, kind, name = type_name.split('/')
    data = json.loads((SHARE / pkg / kind / f'{name}.json').read_text())
    return {h['type_name']: h['hash_string'] for h in data['type_hashes']}[type_name]


def _round_trip(msg: object) -> object:
    return deserialize_message(serialize_message(msg), type(msg))


def _read_all(path: Path) -> dict[str, list[tuple[int, object]]]:
    """Every message of a bag, deserialised with rclpy, by topic."""
    out: dict[str, list[tuple[int, object]]] = {}
    with BagReader(path) as reader:
        for raw in reader.messages():
            msg = deserialize_message(raw.data, message_class(raw.type_name))
            out.setdefault(raw.topic, []).append((raw.timestamp_ns, msg))
    return out


# --- types and paths ---------------------------------------------------------------------------

@pytest.mark.parametrize('type_name', [POINTCLOUD2, GRASP_ARRAY, MARKER_ARRAY,
                                       'gpr_msgs/msg/ClutterRemovalProgress'])
def test_definitions_and_hashes_are_the_installed_ones(type_name: str) -> None:
    msgdef, rihs01 = MessageTypes().definition(type_name)
    assert rihs01 == _installed_hash(type_name)  # what rosidl computed for this install
    assert '=' * 80 + '\nMSG: std_msgs/Header\n' in msgdef  # nested types, ros2msg style


def test_type_names_and_classes() -> None:
    assert type_name_of(PointCloud2) == POINTCLOUD2
    assert type_name_of(GraspArray()) == GRASP_ARRAY
    assert message_class(MARKER_ARRAY) is MarkerArray
    with pytest.raises(BagTypeError, match='not a generated ROS 2 message class'):
        type_name_of(int)
    with pytest.raises(BagTypeError, match='not installed'):
        message_class('no_such_pkg/msg/Thing')
    with pytest.raises(BagTypeError, match='no definition of gpr_msgs/msg/Nope'):
        MessageTypes().definition('gpr_msgs/msg/Nope')


def test_output_paths() -> None:
    assert resolve_bag_path('runs/a.mcap') == (Path('runs/a'), 'mcap')
    assert resolve_bag_path('runs/a.db3') == (Path('runs/a'), 'sqlite3')
    assert resolve_bag_path('runs/a', 'sqlite3') == (Path('runs/a'), 'sqlite3')
    assert resolve_bag_path('runs/a') == (Path('runs/a'), 'mcap')
    with pytest.raises(BagError, match='names storage mcap by its suffix'):
        resolve_bag_path('a.mcap', 'sqlite3')
    with pytest.raises(BagError, match="storage 'zip' is unknown"):
        resolve_bag_path('a', 'zip')


# --- writing and reading -----------------------------------------------------------------------

@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_written_bags_carry_rclpy_cdr_and_ros2_metadata(tmp_path: Path, storage: str,
                                                        clouds: list[PointCloud2],
                                                        pipeline: DetectionPipeline) -> None:
    grasps = pipeline.detect(clouds[0])
    progress = ClutterRemovalProgress(policy='gpr', attempts=3, success_rate=float('nan'))
    with BagWriter(tmp_path / 'out', storage) as writer:
        writer.write('cloud', clouds[0], 5)
        writer.write('grasps', grasps, 6)
        writer.write('grasp_markers', pipeline.markers(grasps), 6)
        writer.write('progress', progress, 7)
    assert sorted(p.name for p in writer.path.iterdir()) == sorted(
        ['metadata.yaml', writer.storage_file.name])
    # rclpy reads back exactly what it serialised (compared after an rclpy round trip: the
    # float32 fields of the originals still hold Python doubles)
    back = _read_all(writer.path)
    assert back['/cloud'][0][1] == clouds[0]
    assert [t for t, _ in back['/grasps']] == [6]
    assert back['/grasps'][0][1] == _round_trip(grasps)
    assert back['/grasp_markers'][0][1] == _round_trip(pipeline.markers(grasps))
    assert back['/progress'][0][1].attempts == 3
    # the metadata names the ROS 2 types with their hashes, as rosbag2 (Jazzy/Kilted) does
    with Reader(writer.path) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert reader.message_count == 4
    expected = {'/cloud': POINTCLOUD2, '/grasps': GRASP_ARRAY, '/grasp_markers': MARKER_ARRAY,
                '/progress': 'gpr_msgs/msg/ClutterRemovalProgress'}
    for topic, type_name in expected.items():
        assert conns[topic].msgtype == type_name
        assert conns[topic].digest == _installed_hash(type_name)
    meta = (writer.path / 'metadata.yaml').read_text()
    assert 'version: 8' in meta and f'storage_identifier: {storage}' in meta
    # the storage file has the definitions a ROS 2 reader needs (no install of gpr_msgs)
    if storage == 'sqlite3':
        with sqlite3.connect(writer.storage_file) as db:
            rows = dict(db.execute('SELECT topic_type, encoded_message_definition '
                                   'FROM message_definitions'))
        assert rows[GRASP_ARRAY].startswith('std_msgs/Header header\ngpr_msgs/Grasp[] grasps')
    else:
        assert conns['/grasps'].msgdef.data.startswith('std_msgs/Header header\n')
    # an independent CDR implementation decodes the bytes with the stored definition
    store = get_typestore(Stores.LATEST)
    raw_cloud = serialize_message(clouds[0])
    decoded = store.deserialize_cdr(raw_cloud, POINTCLOUD2)
    assert decoded.width == clouds[0].width and bytes(decoded.data) == bytes(clouds[0].data)


def test_reader_finds_topics_with_or_without_slash(input_bag: Path) -> None:
    with BagReader(input_bag) as reader:
        assert reader.storage in ('mcap', 'sqlite3')
        assert reader.topic('camera/cloud').name == '/camera/cloud'
        assert reader.topics['/camera/cloud'].count == NUM_SCENES + 1
        assert reader.topics_of_type(POINTCLOUD2) == ['/camera/cloud']
        got = [(raw.timestamp_ns, cloud.header.stamp.sec) for raw, cloud in
               reader.clouds('/camera/cloud')]
    assert got == [((1000 + i) * 1_000_000_000 + 7, 1000 + i) for i in range(NUM_SCENES + 1)]


def test_bare_storage_file_and_folder_without_metadata_are_read(input_bag: Path,
                                                                tmp_path: Path) -> None:
    storage = next(p for p in input_bag.iterdir() if p.suffix in ('.mcap', '.db3'))
    with BagReader(storage) as reader:
        assert reader.topics['/camera/cloud'].count == NUM_SCENES + 1
    copy = tmp_path / 'crashed'
    shutil.copytree(input_bag, copy)
    (copy / 'metadata.yaml').unlink()  # what a killed recorder leaves
    with BagReader(copy) as reader:
        assert len(list(reader.clouds('camera/cloud'))) == NUM_SCENES + 1


def test_writer_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / 'bag'
    with BagWriter(path) as writer:
        writer.write('a', String(data='1'), 1)
    with pytest.raises(BagExistsError, match='exists already'):
        BagWriter(path).open()
    with BagWriter(path, overwrite=True) as writer:
        writer.write('b', String(data='2'), 1)
    assert list(_read_all(path)) == ['/b']
    other = tmp_path / 'notes'
    other.mkdir()
    (other / 'thesis.tex').write_text('x')
    with pytest.raises(BagExistsError, match='not part of a bag'):
        BagWriter(other, overwrite=True).open()
    assert (other / 'thesis.tex').exists()
    with BagWriter(tmp_path / 'typed') as writer:
        writer.write('a', String(data='1'), 1)
        with pytest.raises(BagTypeError, match='already in .* with type std_msgs/msg/String'):
            writer.write('a', GraspArray(), 2)


# --- bad input ---------------------------------------------------------------------------------

def test_missing_topic_lists_the_topics(input_bag: Path) -> None:
    with BagReader(input_bag) as reader, pytest.raises(BagTopicError) as err:
        list(reader.clouds('/cloud'))
    assert "no topic '/cloud'" in str(err.value)
    assert '/camera/cloud (sensor_msgs/msg/PointCloud2, 4 msgs)' in str(err.value)
    assert '/note (std_msgs/msg/String, 4 msgs)' in str(err.value)


def test_wrong_type_is_reported(input_bag: Path) -> None:
    with BagReader(input_bag) as reader, pytest.raises(
            BagTypeError, match='topic /note .* carries std_msgs/msg/String; expected '
                                'sensor_msgs/msg/PointCloud2'):
        list(reader.clouds('note'))


def test_missing_and_foreign_paths(tmp_path: Path) -> None:
    with pytest.raises(BagError, match='no bag at'):
        BagReader(tmp_path / 'nothing')
    (tmp_path / 'x.bag').write_bytes(b'#ROSBAG V2.0')
    with pytest.raises(BagError, match='not a rosbag2 storage file'):
        BagReader(tmp_path / 'x.bag')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagCorruptError, match='no metadata.yaml and 0 storage files'):
        BagReader(tmp_path / 'empty')


def _truncate(bag: Path, tmp_path: Path, keep: float) -> Path:
    copy = tmp_path / f'truncated_{keep}'
    shutil.copytree(bag, copy)
    storage = next(p for p in copy.iterdir() if p.suffix in ('.mcap', '.db3'))
    data = storage.read_bytes()
    storage.write_bytes(data[:int(len(data) * keep)])
    return copy


@pytest.mark.parametrize('keep', [0.0, 0.5])
def test_truncated_bag_is_a_clear_error(input_bag: Path, tmp_path: Path, keep: float) -> None:
    bad = _truncate(input_bag, tmp_path, keep)
    with pytest.raises(BagCorruptError, match=f'cannot open bag {bad}'):
        BagReader(bad).open()


def test_damage_found_mid_replay_keeps_the_output_valid(tmp_path: Path,
                                                        clouds: list[PointCloud2]) -> None:
    # sqlite3 opens with its last pages missing and fails on the rows stored there
    many = _write_input(tmp_path / 'many', 'sqlite3', clouds[:1] * 12)
    bad = _truncate(many, tmp_path, 0.995)
    steps: list[ReplayStep] = []
    with BagReader(bad) as reader, BagWriter(tmp_path / 'out') as writer:
        with pytest.raises(BagCorruptError, match='is damaged: .*before this point were read'):
            replay(reader, writer, _stub_detector, 'camera/cloud', on_step=steps.append)
    assert 0 < len(steps) < 12
    back = _read_all(writer.path)
    assert len(back['/replay/grasps']) == len(steps)


def test_corrupt_message_bytes_are_a_clear_error(tmp_path: Path) -> None:
    with BagWriter(tmp_path / 'bad') as writer:
        writer.write_raw('cloud', POINTCLOUD2, 1, b'\x00\x01\x00\x00garbage')
    with BagReader(tmp_path / 'bad') as reader, pytest.raises(
            BagCorruptError, match='not a valid sensor_msgs/msg/PointCloud2'):
        list(reader.clouds('cloud'))


# --- replay ------------------------------------------------------------------------------------

def _stub_detector(cloud: PointCloud2) -> tuple[GraspArray, MarkerArray | None]:
    return GraspArray(header=cloud.header), None


def test_replay_gives_the_grasps_of_direct_inference(input_bag: Path, tmp_path: Path,
                                                     clouds: list[PointCloud2],
                                                     pipeline: DetectionPipeline) -> None:
    def detect(cloud: PointCloud2) -> tuple[GraspArray, MarkerArray]:
        grasps = pipeline.detect(cloud)
        return grasps, pipeline.markers(grasps)

    steps: list[ReplayStep] = []
    with BagReader(input_bag) as reader, BagWriter(tmp_path / 'out', reader.storage) as writer:
        summary = replay(reader, writer, detect, 'camera/cloud', on_step=steps.append)
    assert summary.complete and summary.clouds == NUM_SCENES + 1 == len(steps)
    assert [s.error == '' for s in steps] == [True] * NUM_SCENES + [False]
    assert 'TOO_FEW_POINTS' in steps[-1].error or 'finite points' in steps[-1].error
    assert summary.copied == {'/camera/cloud': NUM_SCENES + 1, '/note': NUM_SCENES + 1}
    back = _read_all(writer.path)
    assert set(back) == {'/camera/cloud', '/note', '/replay/grasps', '/replay/grasp_markers'}
    assert [m for _, m in back['/camera/cloud']] == clouds
    replayed = back['/replay/grasps']
    assert len(replayed) == NUM_SCENES and summary.grasps > 0
    for i, (timestamp, msg) in enumerate(replayed):
        assert timestamp == (1000 + i) * 1_000_000_000 + 7  # next to its cloud
        assert msg.header.stamp == clouds[i].header.stamp and msg.header.frame_id == FRAME
        direct = array_msg_to_grasps(DetectionPipeline(DetectionConfig()).detect(clouds[i]))
        got = array_msg_to_grasps(msg)
        assert len(got) == len(direct) == steps[i].num_grasps > 0
        np.testing.assert_allclose(got.poses, direct.poses, atol=1e-6)
        np.testing.assert_allclose(got.width, direct.width, atol=1e-7)
        np.testing.assert_allclose(got.score, direct.score, atol=1e-6)
    markers = back['/replay/grasp_markers']
    assert [len(m.markers) for _, m in markers] == [s.num_grasps + 1 for s in steps[:-1]]
    with pytest.raises(DetectionError):  # the failed cloud fails directly too
        pipeline.detect(clouds[-1])


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_interrupted_replay_leaves_a_readable_bag(input_bag: Path, tmp_path: Path,
                                                  storage: str) -> None:
    def stop_after_two(step: ReplayStep) -> None:
        if step.index == 1:
            raise KeyboardInterrupt

    with BagReader(input_bag) as reader, pytest.raises(KeyboardInterrupt):  # noqa: SIM117
        with BagWriter(tmp_path / 'out', storage) as writer:
            replay(reader, writer, _stub_detector, 'camera/cloud', on_step=stop_after_two)
    assert (writer.path / 'metadata.yaml').is_file()
    back = _read_all(writer.path)
    assert len(back['/replay/grasps']) == 2 and len(back['/camera/cloud']) == 2
    with BagReader(input_bag) as reader, BagWriter(tmp_path / 'limited', storage) as writer:
        summary = replay(reader, writer, _stub_detector, 'camera/cloud', copy='cloud',
                         max_messages=1, prefix='gpr')
    assert not summary.complete and summary.clouds == 1
    assert set(_read_all(writer.path)) == {'/camera/cloud', '/gpr/grasps'}


def test_replay_paces_at_the_recorded_rate(input_bag: Path, tmp_path: Path) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with BagReader(input_bag) as reader, BagWriter(tmp_path / 'out') as writer:
        replay(reader, writer, _stub_detector, 'camera/cloud', copy='none', rate=4.0,
               clock=lambda: now[0], sleep=sleep)
    assert sleeps == pytest.approx([0.25] * NUM_SCENES)  # clouds 1 s apart, 4x speed


def test_replay_rejects_bad_arguments(input_bag: Path, tmp_path: Path,
                                      clouds: list[PointCloud2]) -> None:
    with BagWriter(tmp_path / 'replayed') as writer:
        writer.write('cloud', clouds[0], 1)
        writer.write('replay/grasps', GraspArray(), 1)
    with BagReader(writer.path) as reader, BagWriter(tmp_path / 'out') as out:
        with pytest.raises(BagError, match='already has /replay/grasps; choose another'):
            replay(reader, out, _stub_detector, 'cloud')
        assert replay(reader, out, _stub_detector, 'cloud', copy='cloud').clouds == 1
    with BagReader(input_bag) as reader, BagWriter(tmp_path / 'out2') as writer:
        with pytest.raises(BagError, match='rate is -1'):
            replay(reader, writer, _stub_detector, 'camera/cloud', rate=-1)
        with pytest.raises(BagTypeError):
            replay(reader, writer, _stub_detector, 'note')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_replay_copies_other_types_with_their_recorded_definitions(
        tmp_path: Path, storage: str, clouds: list[PointCloud2]) -> None:
    thing = ('int32 a\n', 'RIHS01_' + '1' * 64)  # a type this machine does not have
    with BagWriter(tmp_path / 'in', storage) as writer:
        writer.add_topic('thing', 'my_pkg/msg/Thing', definition=thing)
        writer.add_topic('mystery', 'my_pkg/msg/Mystery', definition=('', 'RIHS01_' + '2' * 64))
        writer.write_raw('thing', 'my_pkg/msg/Thing', 1, b'\x00\x01\x00\x00\x07\x00\x00\x00')
        writer.write_raw('mystery', 'my_pkg/msg/Mystery', 1, b'\x00\x01\x00\x00')
        writer.write('cloud', clouds[0], 2)
    with BagReader(writer.path) as reader, BagWriter(tmp_path / 'out', storage) as out:
        summary = replay(reader, out, _stub_detector, 'cloud')
    assert summary.copied == {'/thing': 1, '/cloud': 1}
    assert list(summary.skipped) == ['/mystery']
    assert 'no definition of my_pkg/msg/Mystery' in summary.describe()
    with BagReader(out.path) as reader:
        copied = reader.topics['/thing']
        assert (copied.definition, copied.type_hash) == thing
        assert next(iter(reader.messages(['thing']))).data[4:] == b'\x07\x00\x00\x00'


# --- the CLI -----------------------------------------------------------------------------------

def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-m', 'gpr_ros.cli', *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def test_cli_replay_writes_the_default_output_and_refuses_to_overwrite(
        bags: dict[str, Path], tmp_path: Path) -> None:
    bag = tmp_path / 'recorded'
    shutil.copytree(bags['sqlite3'], bag)
    result = _cli('replay', str(bag))
    assert result.returncode == 0, result.stderr
    out = tmp_path / f'{bag.name}_gpr'
    assert f'{out} (sqlite3)' in result.stdout  # the input's storage
    assert 'cloud 1/4' in result.stdout and 'grasps' in result.stdout
    assert 'clouds: 4, grasps:' in result.stdout and 'failed: 1' in result.stdout
    assert 'latency: mean' in result.stdout
    back = _read_all(out)
    assert len(back['/replay/grasps']) == NUM_SCENES
    again = _cli('replay', str(bag), '--max-messages', '1')
    assert again.returncode == 1 and 'exists already' in again.stderr
    forced = _cli('replay', str(bag), '--max-messages', '1', '--force', '--copy', 'none',
                  '--out', str(tmp_path / 'one.db3'))
    assert forced.returncode == 0, forced.stderr
    assert set(_read_all(tmp_path / 'one')) == {'/replay/grasps', '/replay/grasp_markers'}
    assert (tmp_path / 'one' / 'one.db3').is_file()


def test_cli_replay_bad_inputs(bags: dict[str, Path], tmp_path: Path) -> None:
    input_bag = bags['mcap']
    missing = _cli('replay', str(input_bag), '--topic', 'cloud', '--out', str(tmp_path / 'a'))
    assert missing.returncode == 1
    assert "no topic 'cloud'" in missing.stderr and '/camera/cloud' in missing.stderr
    wrong = _cli('replay', str(input_bag), '--topic', 'note', '--out', str(tmp_path / 'b'))
    assert wrong.returncode == 1 and 'carries std_msgs/msg/String' in wrong.stderr
    broken = _cli('replay', str(_truncate(input_bag, tmp_path, 0.5)), '--out',
                  str(tmp_path / 'c'))
    assert broken.returncode == 1 and 'cannot open bag' in broken.stderr
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'c').exists()


def test_cli_replay_interrupted_by_sigint_leaves_a_readable_bag(bags: dict[str, Path],
                                                                tmp_path: Path) -> None:
    input_bag = bags['mcap']
    out = tmp_path / 'slow'
    # at half the recorded rate the clouds come 2 s apart: SIGINT lands while it waits
    proc = subprocess.Popen([sys.executable, '-m', 'gpr_ros.cli', 'replay', str(input_bag),
                             '--rate', '0.5', '--out', str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first cloud is done
        assert line.startswith('cloud 1/4'), line
        time.sleep(0.5)  # its bookkeeping too: the next cloud is due 2 s after the first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and 'interrupted' in err, (proc.returncode, err[-3000:])
    back = _read_all(out)
    assert 1 <= len(back['/replay/grasps']) < NUM_SCENES


# --- via a running node, and recording ---------------------------------------------------------

def test_node_detector_times_out_without_a_node(ros_node: Node) -> None:
    detector = NodeDetector(ros_node, cloud_topic='test_bags_nobody', grasps_topic='nobody_g',
                            discovery_timeout=0.5)
    try:
        with pytest.raises(BagTimeoutError, match='start gpr_inference'):
            detector(_clouds()[0])
    finally:
        detector.destroy()


def test_node_detector_resends_lost_clouds_and_reports_unanswered_ones(
        ros_node: Node, input_bag: Path, tmp_path: Path) -> None:
    # a stand-in for gpr_inference on the test's own node: it "loses" the first copy of each
    # cloud and never answers the one stamped 1001 s
    seen: list[int] = []
    pub = ros_node.create_publisher(GraspArray, 'test_nd_grasps', 10)

    def answer(cloud: PointCloud2) -> None:
        seen.append(cloud.header.stamp.sec)
        if seen.count(cloud.header.stamp.sec) > 1 and cloud.header.stamp.sec != 1001:
            pub.publish(GraspArray(header=cloud.header))

    sub = ros_node.create_subscription(PointCloud2, 'test_nd_cloud', answer, 10)
    detector = NodeDetector(ros_node, cloud_topic='test_nd_cloud', grasps_topic='test_nd_grasps',
                            markers_topic='test_nd_markers', timeout=1.5, resend=0.3,
                            markers_timeout=0.2)
    try:
        with BagReader(input_bag) as reader, BagWriter(tmp_path / 'out') as writer:
            summary = replay(reader, writer, detector, 'camera/cloud', copy='none',
                             max_messages=NUM_SCENES)
    finally:
        detector.destroy()
        ros_node.destroy_subscription(sub)
        ros_node.destroy_publisher(pub)
    assert [bool(s.error) for s in summary.steps] == [False, True, False]
    assert 'no GraspArray stamped 1001.000000005' in summary.steps[1].error
    assert seen.count(1000) == 2 and seen.count(1001) >= 3  # resent until the timeout
    back = _read_all(writer.path)
    assert [m.header.stamp.sec for _, m in back['/replay/grasps']] == [1000, 1002]
    assert '/replay/grasp_markers' not in back  # the stand-in publishes no markers


@pytest.mark.skipif(importlib.util.find_spec('gpr_ros.ros.nodes.gpr_inference') is None,
                    reason='the gpr_inference node (gpr_ros.ros.nodes.gpr_inference) is not '
                           'installed yet')
def test_cli_replay_via_node_matches_in_process(bags: dict[str, Path], tmp_path: Path) -> None:
    input_bag = bags['mcap']
    node = start_process(['-m', 'gpr_ros.ros.nodes.gpr_inference', '--ros-args',
                          '-r', 'cloud:=test_bags_cloud', '-r', 'grasps:=test_bags_grasps',
                          '-r', 'grasp_markers:=test_bags_markers'])
    try:
        via = _cli('replay', str(input_bag), '--via-node', '--cloud-topic', 'test_bags_cloud',
                   '--grasps-topic', 'test_bags_grasps', '--markers-topic', 'test_bags_markers',
                   '--out', str(tmp_path / 'via'), '--max-messages', str(NUM_SCENES),
                   '--timeout', '60')
    finally:
        stop_process(node)
    assert via.returncode == 0, via.stderr
    local = _cli('replay', str(input_bag), '--out', str(tmp_path / 'local'),
                 '--max-messages', str(NUM_SCENES))
    assert local.returncode == 0, local.stderr
    got, want = _read_all(tmp_path / 'via'), _read_all(tmp_path / 'local')
    assert len(got['/replay/grasps']) == NUM_SCENES
    for (t1, a), (t2, b) in zip(got['/replay/grasps'], want['/replay/grasps'], strict=True):
        assert t1 == t2 and a.header == b.header
        np.testing.assert_allclose(array_msg_to_grasps(a).poses, array_msg_to_grasps(b).poses,
                                   atol=1e-6)
    assert len(got.get('/replay/grasp_markers', [])) == NUM_SCENES


def test_record_writes_a_running_system_into_mcap(ros_node: Node, tmp_path: Path,
                                                  clouds: list[PointCloud2]) -> None:
    out = tmp_path / 'run.mcap'
    names = ['test_rec_cloud', 'test_rec_grasps', 'test_rec_progress', 'test_rec_never']
    proc = subprocess.Popen([sys.executable, '-m', 'gpr_ros.cli', 'record', '--out', str(out),
                             '--topics', *names], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_cloud = ros_node.create_publisher(PointCloud2, names[0], reliable)
    pub_grasps = ros_node.create_publisher(GraspArray, names[1], reliable)
    pub_progress = ros_node.create_publisher(ClutterRemovalProgress, names[2], latched)
    try:
        # published before the recorder subscribes: the latched message still arrives
        pub_progress.publish(ClutterRemovalProgress(policy='gpr', trial=2))
        spin_while(ros_node, lambda: pub_cloud.get_subscription_count() == 0
                   or pub_grasps.get_subscription_count() == 0
                   or pub_progress.get_subscription_count() == 0, timeout=30)
        sent = []
        for cloud in clouds[:NUM_SCENES]:
            grasps = GraspArray(header=cloud.header)
            pub_cloud.publish(cloud)
            pub_grasps.publish(grasps)
            sent.append(grasps)
            time.sleep(0.05)
        deadline = time.monotonic() + 3.0
        spin_while(ros_node, lambda: time.monotonic() < deadline, timeout=10)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pub in (pub_cloud, pub_grasps, pub_progress):
            ros_node.destroy_publisher(pub)
    assert proc.returncode == 0, stderr
    bag = tmp_path / 'run'
    assert (bag / 'run.mcap').is_file() and (bag / 'metadata.yaml').is_file()
    assert 'never published: /test_rec_never' in stdout
    with BagReader(bag) as reader:
        assert reader.storage == 'mcap'
        types = {t.name: (t.type_name, t.count) for t in reader.topics.values()}
    assert types == {'/test_rec_cloud': (POINTCLOUD2, NUM_SCENES),
                     '/test_rec_grasps': (GRASP_ARRAY, NUM_SCENES),
                     '/test_rec_progress': ('gpr_msgs/msg/ClutterRemovalProgress', 1)}
    back = _read_all(bag)
    assert [m for _, m in back['/test_rec_cloud']] == clouds[:NUM_SCENES]
    assert [m for _, m in back['/test_rec_grasps']] == sent
    assert back['/test_rec_progress'][0][1].trial == 2
    with Reader(bag) as reader:
        conn = next(c for c in reader.connections if c.topic == '/test_rec_progress')
    assert conn.digest == _installed_hash('gpr_msgs/msg/ClutterRemovalProgress')
    # the publisher's QoS is kept, so a player can latch the progress again
    assert conn.ext.offered_qos_profiles[0].durability.name == 'TRANSIENT_LOCAL'
