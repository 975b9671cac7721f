"""Read and write rosbag2 bags (sqlite3 and MCAP), replay them through grasp detection, record.

Bags are read and written with the pure-Python ``rosbags`` library, but every message goes
through rclpy's own CDR (:func:`rclpy.serialization.serialize_message` /
:func:`~rclpy.serialization.deserialize_message`), so the bytes in a bag are exactly what a
ROS 2 publisher would send. Each topic a bag written here carries names its ROS 2 type
(``gpr_msgs/msg/GraspArray``), the message definition in ``ros2msg`` form (the installed
``.msg`` files of the type and everything it nests, as ``ros2 bag record`` stores them) and the
RIHS01 type hash, so ``ros2 bag info/play``, Foxglove and rosbags read them. Definitions come
from the installed interface packages (``share/<pkg>/msg/*.msg`` found through the ament index
or the Python prefix) and from rosbags' own type store for the few an install may lack.

What is here:

- :class:`BagReader`: open a bag folder (``metadata.yaml`` + ``.db3``/``.mcap``) or a bare
  ``.db3``/``.mcap`` file, list its topics, iterate raw messages or rclpy ``PointCloud2``.
- :class:`BagWriter`: write rclpy messages or raw CDR; closing always finishes the storage
  file and writes ``metadata.yaml``, also when the block it guards raised, so an interrupted
  run leaves a readable bag.
- :func:`replay`: run a detector on every cloud of a topic and write the grasps and markers
  next to the input messages. :class:`NodeDetector` is a detector that asks a running
  ``gpr_inference`` node over DDS.
- :class:`BagRecorder`: subscribe to topics of a running system without knowing their types
  in advance (raw subscriptions) and write the CDR straight into a bag.

Errors are typed (:class:`BagError` and its subclasses) and say what was wrong and what was
expected; a missing topic lists the topics the bag does have.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import shutil
import signal
import statistics
import struct
import sys
import threading
import time
from types import TracebackType
from typing import Any, Literal

import apsw
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import (
    Nodetype,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from gpr_msgs.msg import GraspArray
from gpr_ros.core.errors import GprError

__all__ = [
    'BAG_VERSION',
    'GRASP_ARRAY',
    'MARKER_ARRAY',
    'POINTCLOUD2',
    'STORAGES',
    'BagCorruptError',
    'BagError',
    'BagExistsError',
    'BagReader',
    'BagRecorder',
    'BagTimeoutError',
    'BagTopicError',
    'BagTypeError',
    'BagWriter',
    'Detector',
    'MessageTypes',
    'NodeDetector',
    'RawMessage',
    'ReplayStep',
    'ReplaySummary',
    'TopicInfo',
    'default_types',
    'message_class',
    'replay',
    'resolve_bag_path',
    'type_name_of',
]

#: Storage plugins a bag can use, as ``metadata.yaml`` names them.
STORAGES = ('mcap', 'sqlite3')
#: File suffix of each storage.
SUFFIXES = {'mcap': '.mcap', 'sqlite3': '.db3'}
#: rosbag2 metadata version written: 8 is what Jazzy writes (Kilted reads it too; version 9
#: changed the QoS serialisation, which older readers do not understand).
BAG_VERSION: Literal[8] = 8
POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'
GRASP_ARRAY = 'gpr_msgs/msg/GraspArray'
MARKER_ARRAY = 'visualization_msgs/msg/MarkerArray'

#: What a storage backend raises on damaged input (besides rosbags' ReaderError).
_CORRUPTION = (ReaderError, apsw.Error, struct.error, EOFError, ValueError, KeyError,
               IndexError, RuntimeError, OSError)


# --- errors ------------------------------------------------------------------------------------

class BagError(GprError):
    """Base class of every bag error: a missing bag, an unusable path, a failed write."""


class BagExistsError(BagError, FileExistsError):
    """The output bag exists already (pass ``overwrite=True`` / ``--force`` to replace it)."""


class BagTopicError(BagError, LookupError):
    """The requested topic is not in the bag; the message lists the topics that are."""


class BagTypeError(BagError, TypeError):
    """A topic has another message type than expected, or a type cannot be resolved."""


class BagCorruptError(BagError):
    """The bag's files are truncated or damaged, or a message cannot be deserialised."""


class BagTimeoutError(BagError, TimeoutError):
    """A running node did not answer in time (``replay --via-node``)."""


# --- types -------------------------------------------------------------------------------------

def type_name_of(msg_type: type | object) -> str:
    """ROS 2 type name of an rclpy message class or instance.

    :param msg_type: e.g. ``sensor_msgs.msg.PointCloud2`` or an instance of it.
    :return: ``'sensor_msgs/msg/PointCloud2'``.
    :raises BagTypeError: when it is not a generated ROS message class.
    """
    cls = msg_type if isinstance(msg_type, type) else type(msg_type)
    parts = cls.__module__.split('.')
    if len(parts) < 2 or parts[1] not in ('msg', 'srv', 'action') or not hasattr(
            cls, '_TYPE_SUPPORT'):
        raise BagTypeError(
            f'{cls.__module__}.{cls.__qualname__} is not a generated ROS 2 message class; '
            'expected e.g. sensor_msgs.msg.PointCloud2')
    return f'{parts[0]}/{parts[1]}/{cls.__name__}'


def message_class(type_name: str) -> type:
    """Import the rclpy message class of a ROS 2 type name.

    :param type_name: ``'pkg/msg/Name'``.
    :return: the class.
    :raises BagTypeError: on a malformed name or a package that is not installed.
    """
    parts = type_name.split('/')
    if len(parts) != 3 or not all(parts):
        raise BagTypeError(f'type name {type_name!r} is malformed; expected pkg/msg/Name')
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{kind}')
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise BagTypeError(
            f'message type {type_name} is not installed (no Python module {pkg}.{kind} with '
            f'{name}); install or build the {pkg} interface package') from None


def _share_dirs(package: str) -> list[Path]:
    """Where ``package``'s interface files may be: the ament index, then the Python prefix."""
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory(package)))
    except (ImportError, LookupError, OSError, ValueError):
        pass
    dirs.append(Path(sys.prefix) / 'share' / package)
    return dirs


def _dependencies(fields: Sequence[tuple[str, Any]]) -> list[str]:
    """Type names nested in a rosbags field list."""
    deps: list[str] = []
    for _, desc in fields:
        if desc[0] == Nodetype.NAME:
            deps.append(desc[1])
        elif desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE) and desc[1][0][0] == Nodetype.NAME:
            deps.append(desc[1][0][1])
    return deps


class MessageTypes:
    """Message definitions and RIHS01 hashes of ROS 2 types, as installed on this machine.

    Each type is parsed from its installed ``.msg`` file (and each type it nests from its
    own), which is what ``ros2 bag record`` stores; types an install lacks come from rosbags'
    newest type store. The hashes equal the ``type_hashes`` rosidl writes into
    ``share/<pkg>/msg/<Name>.json``.
    """

    def __init__(self, share_dirs: Callable[[str], Sequence[Path]] = _share_dirs) -> None:
        """Create an empty cache.

        :param share_dirs: package name -> folders to look in for ``msg/<Name>.msg``.
        """
        self._share_dirs = share_dirs
        self._store: Typestore = get_typestore(Stores.EMPTY)
        self._fallback: Typestore | None = None
        self._cache: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def definition(self, type_name: str) -> tuple[str, str]:
        """Message definition (``ros2msg`` text with nested types) and RIHS01 hash.

        :param type_name: ``'pkg/msg/Name'``.
        :return: ``(definition, 'RIHS01_<sha256>')``.
        :raises BagTypeError: when no definition of the type (or a nested one) is found.
        """
        with self._lock:
            if type_name not in self._cache:
                self._ensure(type_name, ())
                msgdef, _ = self._store.generate_msgdef(type_name, ros_version=2)
                self._cache[type_name] = (msgdef, self._store.hash_rihs01(type_name))
            return self._cache[type_name]

    def _ensure(self, type_name: str, chain: tuple[str, ...]) -> None:
        if type_name in self._store.fielddefs:
            return
        if type_name in chain:
            raise BagTypeError(f'message type {type_name} nests itself: {" -> ".join(chain)}')
        parsed = self._parse(type_name)
        for dep in _dependencies(parsed[type_name][1]):
            self._ensure(dep, (*chain, type_name))
        self._store.register(parsed)

    def _parse(self, type_name: str) -> dict[str, Any]:
        parts = type_name.split('/')
        if len(parts) != 3:
            raise BagTypeError(f'type name {type_name!r} is malformed; expected pkg/msg/Name')
        pkg, kind, name = parts
        for folder in self._share_dirs(pkg):
            path = folder / kind / f'{name}.msg'
            if path.is_file():
                try:
                    return dict(get_types_from_msg(path.read_text(encoding='utf-8'), type_name))
                except Exception as err:  # rosbags raises its own parser errors
                    raise BagTypeError(f'cannot parse {path}: {err}') from None
        if self._fallback is None:
            self._fallback = get_typestore(Stores.LATEST)
        if type_name in self._fallback.fielddefs:
            return {type_name: self._fallback.fielddefs[type_name]}
        raise BagTypeError(
            f'no definition of {type_name}: {kind}/{name}.msg is not in the share folder of '
            f'{pkg} ({", ".join(str(d) for d in self._share_dirs(pkg))}) and rosbags does not '
            'know the type; install the interface package')


_TYPES: MessageTypes | None = None
_TYPES_LOCK = threading.Lock()


def default_types() -> MessageTypes:
    """The process-wide :class:`MessageTypes` (created on first use)."""
    global _TYPES
    with _TYPES_LOCK:
        if _TYPES is None:
            _TYPES = MessageTypes()
        return _TYPES


# --- paths -------------------------------------------------------------------------------------

def resolve_bag_path(path: str | Path, storage: str | None = None,
                     default: str = 'mcap') -> tuple[Path, str]:
    """The folder of an output bag and its storage.

    A rosbag2 bag is a folder; a path ending in ``.mcap`` or ``.db3`` names the storage and
    the folder is the path without the suffix (``run.mcap`` -> folder ``run`` holding
    ``run/run.mcap`` and ``run/metadata.yaml``).

    :param path: the path as given.
    :param storage: ``'mcap'``, ``'sqlite3'`` or None (from the suffix, else ``default``).
    :param default: storage when neither the suffix nor ``storage`` says.
    :return: ``(folder, storage)``.
    :raises BagError: on an unknown storage or one that contradicts the suffix.
    """
    path = Path(path)
    by_suffix = {v: k for k, v in SUFFIXES.items()}.get(path.suffix)
    for value in (storage, default):
        if value is not None and value not in STORAGES:
            raise BagError(f'storage {value!r} is unknown; expected one of {", ".join(STORAGES)}')
    if by_suffix is not None:
        if storage is not None and storage != by_suffix:
            raise BagError(f'{path} names storage {by_suffix} by its suffix but storage '
                           f'{storage} was asked for; drop the suffix or the storage option')
        return path.with_suffix(''), by_suffix
    return path, storage or default


def _normalise_topic(topic: str) -> str:
    return topic if topic.startswith('/') else '/' + topic


# --- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag.

    :ivar name: the topic (absolute, as recorded).
    :ivar type_name: ROS 2 type, e.g. ``'sensor_msgs/msg/PointCloud2'``.
    :ivar count: messages on it.
    :ivar type_hash: RIHS01 hash the bag gives for the type ('' when it gives none).
    :ivar definition: the message definition stored in the bag (``ros2msg`` or ``ros2idl``
        text; '' when it stores none, as Humble's sqlite3 bags).
    :ivar qos: the offered QoS profiles recorded for the topic.
    """

    name: str
    type_name: str
    count: int
    type_hash: str = ''
    definition: str = ''
    qos: tuple[Qos, ...] = ()


@dataclass(frozen=True)
class RawMessage:
    """One serialised message of a bag.

    :ivar topic: its topic.
    :ivar type_name: its ROS 2 type.
    :ivar timestamp_ns: the bag's timestamp (receive time when recorded), ns since the epoch.
    :ivar data: CDR bytes, as rclpy serialises them.
    """

    topic: str
    type_name: str
    timestamp_ns: int
    data: bytes


class BagReader:
    """Read a rosbag2 bag (sqlite3 or MCAP), or a bare ``.db3``/``.mcap`` storage file.

    A folder without ``metadata.yaml`` but with exactly one storage file (left by a recorder
    that was killed) is read from that file. Use as a context manager or call
    :meth:`open` / :meth:`close`.
    """

    def __init__(self, path: str | Path, types: MessageTypes | None = None) -> None:
        """Locate the bag (nothing is read yet).

        :param path: bag folder or storage file.
        :param types: definitions used to check type hashes (default: the installed ones).
        :raises BagError: when nothing readable is at ``path``.
        """
        self.path = Path(path)
        self._types = types
        if not self.path.exists():
            raise BagError(f'no bag at {self.path}; expected a rosbag2 folder (metadata.yaml '
                           'and a .db3 or .mcap file) or a .db3/.mcap file')
        self._source = self._locate(self.path)
        #: ``'mcap'`` or ``'sqlite3'``.
        self.storage = 'mcap' if (self._source.suffix == '.mcap' if self._source.is_file()
                                  else any(self._source.glob('*.mcap*'))) else 'sqlite3'
        self._reader: Reader | None = None
        self._topics: dict[str, TopicInfo] = {}

    @staticmethod
    def _locate(path: Path) -> Path:
        if path.is_file():
            if path.suffix not in SUFFIXES.values():
                raise BagError(f'{path} is not a rosbag2 storage file; expected a bag folder '
                               'or a file ending in .db3 or .mcap')
            return path
        if (path / 'metadata.yaml').is_file():
            return path
        files = [p for p in path.iterdir() if p.suffix in SUFFIXES.values()]
        if len(files) == 1:
            return files[0]
        raise BagCorruptError(
            f'{path} has no metadata.yaml and {len(files)} storage files '
            f'({", ".join(p.name for p in files) or "none"}); expected a rosbag2 folder '
            '(metadata.yaml and its .db3/.mcap files) or one storage file')

    def open(self) -> BagReader:
        """Open the storage and read the topic list.

        :return: self.
        :raises BagCorruptError: when the metadata or storage cannot be read.
        """
        if self._reader is not None:
            return self
        reader = Reader(self._source)
        try:
            reader.open()
        except _CORRUPTION as err:
            raise BagCorruptError(f'cannot open bag {self.path}: {err}') from None
        try:
            topics: dict[str, TopicInfo] = {}
            for conn in reader.connections:
                old = topics.get(conn.topic)
                count = conn.msgcount + (old.count if old is not None else 0)
                qos = tuple(getattr(conn.ext, 'offered_qos_profiles', ()) or ())
                topics[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count,
                                               conn.digest or '', conn.msgdef.data or '', qos)
        except _CORRUPTION as err:
            with contextlib.suppress(Exception):
                reader.close()
            raise BagCorruptError(f'cannot read the topics of bag {self.path}: {err}') from None
        self._reader = reader
        self._topics = topics
        return self

    def close(self) -> None:
        """Close the storage (never raises)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _opened(self) -> Reader:
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open; call open() or use "with"')
        return self._reader

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topics of the bag by name."""
        self._opened()
        return dict(self._topics)

    @property
    def message_count(self) -> int:
        """Messages in the bag, all topics."""
        return sum(t.count for t in self.topics.values())

    def describe_topics(self) -> str:
        """``'/a (pkg/msg/A, 3 msgs), ...'`` for messages."""
        return ', '.join(f'{t.name} ({t.type_name}, {t.count} msgs)'
                         for t in sorted(self.topics.values(), key=lambda t: t.name)) or 'none'

    def topic(self, name: str, type_name: str | None = None) -> TopicInfo:
        """Look up a topic, accepting a name without its leading slash.

        :param name: ``'cloud'`` or ``'/cloud'``.
        :param type_name: when given, the type the topic must have.
        :return: the topic.
        :raises BagTopicError: when the bag has no such topic (lists the topics it has).
        :raises BagTypeError: when the topic has another type, or was recorded with another
            definition of the type than the installed one (the hashes differ).
        """
        topics = self.topics
        info = topics.get(name) or topics.get(_normalise_topic(name))
        if info is None:
            raise BagTopicError(f'bag {self.path} has no topic {name!r}; it has: '
                                f'{self.describe_topics()}')
        if type_name is not None:
            if info.type_name != type_name:
                raise BagTypeError(
                    f'topic {info.name} of bag {self.path} carries {info.type_name}; expected '
                    f'{type_name}')
            types = self._types or default_types()
            installed = types.definition(type_name)[1]
            if info.type_hash.startswith('RIHS01_') and info.type_hash != installed:
                raise BagTypeError(
                    f'topic {info.name} of bag {self.path} was recorded with another definition '
                    f'of {type_name} (hash {info.type_hash}) than the installed one '
                    f'({installed}); its messages cannot be read with this install')
        return info

    def topics_of_type(self, type_name: str) -> list[str]:
        """Names of the topics that carry ``type_name``, sorted."""
        return sorted(t.name for t in self.topics.values() if t.type_name == type_name)

    def messages(self, topics: Collection[str] | None = None) -> Iterator[RawMessage]:
        """Iterate the raw messages in time order.

        :param topics: only these topics (names with or without the leading slash); None: all.
        :return: an iterator of :class:`RawMessage`.
        :raises BagTopicError: when a requested topic is not in the bag.
        :raises BagCorruptError: when the storage turns out damaged while reading.
        """
        reader = self._opened()
        wanted: set[str] | None = None
        if topics is not None:
            wanted = {self.topic(t).name for t in topics}
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        stream = reader.messages(connections=connections)
        while True:
            try:
                conn, timestamp, data = next(stream)
            except StopIteration:
                return
            except _CORRUPTION as err:
                raise BagCorruptError(
                    f'bag {self.path} is damaged: {type(err).__name__}: {err}; the messages '
                    'before this point were read') from None
            yield RawMessage(conn.topic, conn.msgtype, int(timestamp), bytes(data))

    @staticmethod
    def deserialize(raw: RawMessage, msg_type: type | None = None) -> Any:
        """Turn a raw message into its rclpy message.

        :param raw: the message.
        :param msg_type: the rclpy class (default: imported from ``raw.type_name``).
        :return: the message.
        :raises BagCorruptError: when the bytes are not a valid message of the type.
        :raises BagTypeError: when the type is not installed.
        """
        cls = msg_type if msg_type is not None else message_class(raw.type_name)
        try:
            return deserialize_message(raw.data, cls)
        except (RuntimeError, ValueError, TypeError) as err:
            raise BagCorruptError(
                f'message on {raw.topic} at {raw.timestamp_ns} ns is not a valid '
                f'{raw.type_name} ({len(raw.data)} bytes): {err}') from None

    def clouds(self, topic: str) -> Iterator[tuple[RawMessage, PointCloud2]]:
        """Iterate the point clouds of a topic as rclpy messages.

        :param topic: a ``sensor_msgs/msg/PointCloud2`` topic.
        :return: an iterator of ``(raw, cloud)``.
        :raises BagTopicError: when the topic is missing.
        :raises BagTypeError: when it carries another type.
        :raises BagCorruptError: when the storage or a message is damaged.
        """
        info = self.topic(topic, POINTCLOUD2)
        for raw in self.messages([info.name]):
            yield raw, self.deserialize(raw, PointCloud2)


# --- writing -----------------------------------------------------------------------------------

def _remove_bag(folder: Path) -> None:
    """Delete an old bag folder, refusing anything that holds other files."""
    if folder.is_file() or folder.is_symlink():
        raise BagExistsError(f'{folder} exists and is not a bag folder; not replacing it')
    names = [p.name for p in folder.iterdir()]
    foreign = [n for n in names if n != 'metadata.yaml' and not any(
        n.endswith(s) or n.endswith(s + '.zstd') or n.endswith(s + '-journal')
        for s in SUFFIXES.values())]
    if foreign:
        raise BagExistsError(
            f'{folder} exists and holds files that are not part of a bag '
            f'({", ".join(sorted(foreign)[:5])}); not replacing it')
    shutil.rmtree(folder)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (main thread only), then deliver them.

    A Ctrl-C landing inside a storage write or close would leave a half-written record or a
    file without its summary; deferred, it arrives between records and the ``with`` block of
    :class:`BagWriter` closes a consistent file. Elsewhere (other threads) a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(
                signum, lambda number, frame: caught.append((number, frame)))
    except (ValueError, OSError):  # no signal support here
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in caught[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


class BagWriter:
    """Write a rosbag2 bag (MCAP or sqlite3) with correct type names, definitions and hashes.

    ``with BagWriter(...) as bag:`` opens it and always closes it properly when the block
    ends, also on an exception or Ctrl-C, so what was written stays readable (rosbags' own
    context manager discards the metadata on an exception; this one does not).
    """

    def __init__(self, path: str | Path, storage: str | None = None, *,
                 overwrite: bool = False, types: MessageTypes | None = None) -> None:
        """Prepare the writer (nothing is created yet).

        :param path: the bag folder; a ``.mcap`` / ``.db3`` suffix selects the storage and is
            dropped from the folder name (see :func:`resolve_bag_path`).
        :param storage: ``'mcap'`` (default) or ``'sqlite3'``.
        :param overwrite: replace an existing bag at the path.
        :param types: where definitions and hashes come from (default: the installed ones).
        :raises BagError: on an unknown storage.
        """
        self.path, self.storage = resolve_bag_path(path, storage)
        self.overwrite = overwrite
        self._types = types or default_types()
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._types_of: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def storage_file(self) -> Path:
        """The ``.mcap`` / ``.db3`` file inside the folder."""
        return self.path / f'{self.path.name}{SUFFIXES[self.storage]}'

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._writer is not None

    def open(self) -> BagWriter:
        """Create the bag folder and its storage file.

        :return: self.
        :raises BagExistsError: when the path exists and ``overwrite`` is False.
        :raises BagError: when the folder cannot be created.
        """
        if self._writer is not None:
            return self
        if self.path.exists() or self.path.is_symlink():
            if not self.overwrite:
                raise BagExistsError(f'{self.path} exists already; choose another output or '
                                     'allow overwriting (--force)')
            _remove_bag(self.path)
        plugin = StoragePlugin.MCAP if self.storage == 'mcap' else StoragePlugin.SQLITE3
        writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer.open()
        except (WriterError, OSError, apsw.Error) as err:
            raise BagError(f'cannot create bag {self.path}: {err}') from None
        self._writer = writer
        return self

    def add_topic(self, topic: str, type_name: str, qos: Sequence[Qos] = (),
                  definition: tuple[str, str] | None = None) -> None:
        """Register a topic (done by :meth:`write` on first use).

        :param topic: topic name (made absolute).
        :param type_name: its ROS 2 type.
        :param qos: offered QoS profiles to store (what ``ros2 bag play`` offers again).
        :param definition: ``(message definition, RIHS01 hash)`` to store, e.g. those of an
            input bag whose messages are copied; default: the installed definition.
        :raises BagTypeError: when the topic is registered with another type, or the type
            has no definition.
        :raises BagError: when the bag is not open.
        """
        topic = _normalise_topic(topic)
        with self._lock, _interrupts_deferred():
            writer = self._opened()
            have = self._types_of.get(topic)
            if have is not None:
                if have != type_name:
                    raise BagTypeError(f'topic {topic} is already in {self.path} with type '
                                       f'{have}; cannot also write {type_name} on it')
                return
            msgdef, rihs01 = definition or self._types.definition(type_name)
            try:
                conn = writer.add_connection(topic, type_name, msgdef=msgdef, rihs01=rihs01,
                                             offered_qos_profiles=list(qos))
            except (WriterError, OSError, apsw.Error) as err:
                raise BagError(f'cannot add topic {topic} to {self.path}: {err}') from None
            self._connections[topic] = conn
            self._types_of[topic] = type_name
            self.counts[topic] = 0

    def write_raw(self, topic: str, type_name: str, timestamp_ns: int,
                  data: bytes | memoryview) -> None:
        """Write one serialised message.

        :param topic: topic name.
        :param type_name: its ROS 2 type (registers the topic on first use).
        :param timestamp_ns: bag timestamp (receive time), ns since the epoch.
        :param data: CDR bytes as rclpy serialises them.
        :raises BagError: when the bag is closed or the storage fails.
        """
        topic = _normalise_topic(topic)
        if topic not in self._connections:
            self.add_topic(topic, type_name)
        elif self._types_of[topic] != type_name:
            raise BagTypeError(f'topic {topic} is already in {self.path} with type '
                               f'{self._types_of[topic]}; cannot also write {type_name} on it')
        with self._lock, _interrupts_deferred():
            writer = self._opened()
            try:
                writer.write(self._connections[topic], int(timestamp_ns), bytes(data))
            except (WriterError, OSError, apsw.Error) as err:
                raise BagError(f'cannot write to {self.path}: {err}') from None
            self.counts[topic] += 1

    def write(self, topic: str, msg: object, timestamp_ns: int) -> None:
        """Serialise an rclpy message with rclpy and write it.

        :param topic: topic name.
        :param msg: the message.
        :param timestamp_ns: bag timestamp, ns since the epoch.
        :raises BagError: as :meth:`write_raw`.
        """
        self.write_raw(topic, type_name_of(msg), timestamp_ns, serialize_message(msg))

    def close(self) -> None:
        """Finish the storage file and write ``metadata.yaml``; a second call does nothing.

        :raises BagError: when the storage cannot be finished (disk full, ...).
        """
        with self._lock, _interrupts_deferred():
            writer, self._writer = self._writer, None
            if writer is None:
                return
            try:
                writer.close()
            except (WriterError, OSError, apsw.Error) as err:
                with contextlib.suppress(Exception):
                    writer.abort()
                raise BagError(f'cannot finish bag {self.path}: {err}') from None

    def _opened(self) -> Writer:
        if self._writer is None:
            raise BagError(f'bag {self.path} is not open for writing')
        return self._writer

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Close (not abort) on errors too: the messages already written stay readable.
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(BagError):
                self.close()


# --- replay ------------------------------------------------------------------------------------

#: A detector: cloud -> grasps (stamped like the cloud) and optional markers.
Detector = Callable[[PointCloud2], tuple[GraspArray, MarkerArray | None]]


@dataclass(frozen=True)
class ReplayStep:
    """What happened to one cloud of a replay.

    :ivar index: 0-based index of the cloud on its topic.
    :ivar total: clouds on the topic.
    :ivar timestamp_ns: its bag timestamp.
    :ivar num_points: points in the cloud (width x height).
    :ivar num_grasps: grasps detected (0 on an error).
    :ivar latency_s: wall-clock time of the detection (the round trip with ``--via-node``).
    :ivar error: why detection failed ('' when it did not).
    """

    index: int
    total: int
    timestamp_ns: int
    num_points: int
    num_grasps: int
    latency_s: float
    error: str = ''


@dataclass
class ReplaySummary:
    """Totals of a replay.

    :ivar steps: one entry per cloud processed.
    :ivar copied: input messages copied to the output, per topic.
    :ivar skipped: input topics not copied, with the reason (a type without a definition).
    :ivar complete: False when the replay stopped early (``max_messages``).
    """

    steps: list[ReplayStep] = field(default_factory=list)
    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    complete: bool = True

    @property
    def clouds(self) -> int:
        """Clouds processed."""
        return len(self.steps)

    @property
    def grasps(self) -> int:
        """Grasps detected in all clouds."""
        return sum(s.num_grasps for s in self.steps)

    @property
    def failures(self) -> list[ReplayStep]:
        """Clouds whose detection failed."""
        return [s for s in self.steps if s.error]

    def latency(self) -> dict[str, float]:
        """``mean``, ``median`` and ``max`` detection latency over successful clouds, s."""
        values = [s.latency_s for s in self.steps if not s.error]
        if not values:
            return {}
        return {'mean': statistics.fmean(values), 'median': statistics.median(values),
                'max': max(values)}

    def describe(self) -> str:
        """A few lines for the terminal."""
        lines = [f'clouds: {self.clouds}{"" if self.complete else " (stopped early)"}, '
                 f'grasps: {self.grasps}, failed: {len(self.failures)}']
        lat = self.latency()
        if lat:
            lines.append('latency: ' + ', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in lat.items()))
        for step in self.failures[:5]:
            lines.append(f'  cloud {step.index}: {step.error}')
        if self.copied:
            copied = sorted(self.copied.items())
            lines.append('copied: ' + ', '.join(f'{t} {n}' for t, n in copied))
        for topic, reason in sorted(self.skipped.items()):
            lines.append(f'not copied: {topic}: {reason}')
        return '\n'.join(lines)


def replay(reader: BagReader, writer: BagWriter, detect: Detector, topic: str, *,
           prefix: str = '/replay', copy: Literal['all', 'cloud', 'none'] = 'all',
           rate: float = 0.0, max_messages: int | None = None,
           on_step: Callable[[ReplayStep], None] | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> ReplaySummary:
    """Run ``detect`` on every cloud of ``topic`` and write the results into ``writer``.

    The output receives, in the input's time order, the copied input messages (with the
    definitions and QoS they were recorded with; a topic whose type has no definition in the
    input nor on this machine is skipped and reported) and, at each
    cloud's bag timestamp, ``<prefix>/grasps`` (``gpr_msgs/msg/GraspArray``, stamped like the
    cloud) and ``<prefix>/grasp_markers`` (``visualization_msgs/msg/MarkerArray``, when the
    detector gives markers). A cloud whose detection fails with a :class:`GprError` (too few
    points, a malformed cloud, no answer in time: :class:`BagTimeoutError`) gets no grasps and
    is reported in its step. Other exceptions (other :class:`BagError`, Ctrl-C) propagate; the
    caller's ``with BagWriter(...)`` then closes the output with everything written so far.

    :param reader: the open input bag.
    :param writer: the open output bag.
    :param detect: the detector.
    :param topic: the ``sensor_msgs/msg/PointCloud2`` topic.
    :param prefix: namespace of the output topics.
    :param copy: copy every input topic (``'all'``), only the cloud topic, or nothing.
    :param rate: play at the recorded rate times ``rate`` (0: as fast as possible).
    :param max_messages: stop after this many clouds (None: all).
    :param on_step: called after each cloud (progress, printing; may raise to stop).
    :param clock: monotonic clock, s (injectable for tests).
    :param sleep: sleep function (injectable for tests).
    :return: the summary.
    :raises BagTopicError: the topic is missing (the message lists the bag's topics).
    :raises BagTypeError: the topic is not a PointCloud2 topic.
    :raises BagCorruptError: the input is damaged (the output keeps what was written).
    :raises BagError: an output topic would collide with a copied input topic, bad arguments.
    """
    if copy not in ('all', 'cloud', 'none'):
        raise BagError(f"copy is {copy!r}; expected 'all', 'cloud' or 'none'")
    if not (rate >= 0.0) or rate == float('inf'):
        raise BagError(f'rate is {rate}; expected a finite value >= 0 (0: as fast as possible)')
    if max_messages is not None and max_messages < 1:
        raise BagError(f'max_messages is {max_messages}; expected >= 1 or None')
    info = reader.topic(topic, POINTCLOUD2)
    base = _normalise_topic(prefix).rstrip('/')
    grasps_topic, markers_topic = f'{base}/grasps', f'{base}/grasp_markers'
    copied_topics = (set(reader.topics) if copy == 'all'
                     else {info.name} if copy == 'cloud' else set())
    clash = copied_topics & {grasps_topic, markers_topic}
    if clash:
        raise BagError(f'the input bag already has {", ".join(sorted(clash))}; choose another '
                       'output prefix')
    summary = ReplaySummary()
    for name in sorted(copied_topics):
        copied = reader.topics[name]
        stored = ((copied.definition, copied.type_hash)
                  if copied.definition and copied.type_hash.startswith('RIHS01_') else None)
        try:  # copied bytes keep the definition they were recorded with
            writer.add_topic(name, copied.type_name, copied.qos, stored)
        except BagTypeError as err:
            summary.skipped[name] = str(err)
    copied_topics -= set(summary.skipped)
    wanted = copied_topics | {info.name}
    start: tuple[float, int] | None = None
    for raw in reader.messages(wanted):
        if raw.topic != info.name:
            writer.write_raw(raw.topic, raw.type_name, raw.timestamp_ns, raw.data)
            summary.copied[raw.topic] = summary.copied.get(raw.topic, 0) + 1
            continue
        if max_messages is not None and summary.clouds >= max_messages:
            summary.complete = False
            break
        cloud = reader.deserialize(raw, PointCloud2)
        if rate > 0.0:
            if start is None:
                start = (clock(), raw.timestamp_ns)
            due = start[0] + (raw.timestamp_ns - start[1]) * 1e-9 / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        if info.name in copied_topics:
            writer.write_raw(raw.topic, raw.type_name, raw.timestamp_ns, raw.data)
            summary.copied[raw.topic] = summary.copied.get(raw.topic, 0) + 1
        begin = clock()
        error = ''
        try:
            grasps, markers = detect(cloud)
        except BagTimeoutError as err:  # no answer for this cloud: go on with the next
            grasps, markers, error = None, None, f'{type(err).__name__}: {err}'
        except BagError:
            raise
        except GprError as err:  # the cloud was rejected (too few points, malformed, ...)
            grasps, markers, error = None, None, f'{type(err).__name__}: {err}'
        latency = clock() - begin
        if grasps is not None:
            writer.write(grasps_topic, grasps, raw.timestamp_ns)
            if markers is not None:
                writer.write(markers_topic, markers, raw.timestamp_ns)
        step = ReplayStep(index=summary.clouds, total=info.count, timestamp_ns=raw.timestamp_ns,
                          num_points=int(cloud.width) * int(cloud.height),
                          num_grasps=len(grasps.grasps) if grasps is not None else 0,
                          latency_s=latency, error=error)
        summary.steps.append(step)
        if on_step is not None:
            on_step(step)
    return summary


def _stamp_key(stamp: Any) -> tuple[int, int]:
    return int(stamp.sec), int(stamp.nanosec)


class NodeDetector:
    """A :data:`Detector` that asks a running ``gpr_inference`` node over DDS.

    Each call publishes the cloud (reliable, so it reaches best-effort and reliable
    subscribers) and spins ``node`` until a ``GraspArray`` with the cloud's stamp arrives on
    the grasps topic, then briefly for the markers with that stamp. Clouds are sent one at a
    time. ``gpr_inference`` subscribes best effort, and multi-megabyte best-effort samples do
    get lost, so a cloud without an answer after ``resend`` seconds is published again (a
    late duplicate answer is ignored: answers are matched by stamp).
    """

    def __init__(self, node: Node, *, cloud_topic: str = 'cloud', grasps_topic: str = 'grasps',
                 markers_topic: str = 'grasp_markers', timeout: float = 30.0,
                 discovery_timeout: float = 15.0, markers_timeout: float = 1.0,
                 resend: float = 5.0) -> None:
        """Create the publisher and subscriptions on ``node``.

        :param node: a node of an initialised rclpy context (spun here, not elsewhere).
        :param cloud_topic: where the node listens for clouds.
        :param grasps_topic: where it publishes grasps.
        :param markers_topic: where it publishes markers ('' to not wait for markers).
        :param timeout: seconds to wait for each answer.
        :param discovery_timeout: seconds to wait for the node to appear.
        :param markers_timeout: seconds to wait for the markers after the grasps.
        :param resend: publish the cloud again after this many seconds without an answer
            (0: never).
        """
        self.node = node
        self.resend = resend
        self.cloud_topic, self.grasps_topic = cloud_topic, grasps_topic
        self.timeout, self.discovery_timeout = timeout, discovery_timeout
        self.markers_timeout = markers_timeout
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                              reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        self._grasps: dict[tuple[int, int], GraspArray] = {}
        self._markers: dict[tuple[int, int], MarkerArray] = {}
        self._pub = node.create_publisher(PointCloud2, cloud_topic, reliable)
        self._subs = [node.create_subscription(GraspArray, grasps_topic, self._on_grasps,
                                               reliable)]
        self._markers_seen: bool | None = None if markers_topic else False
        if markers_topic:
            self._subs.append(node.create_subscription(MarkerArray, markers_topic,
                                                       self._on_markers, reliable))
        self._ready = False

    def _on_grasps(self, msg: GraspArray) -> None:
        self._grasps[_stamp_key(msg.header.stamp)] = msg

    def _on_markers(self, msg: MarkerArray) -> None:
        stamps = {_stamp_key(m.header.stamp) for m in msg.markers}
        for key in stamps:
            self._markers[key] = msg

    def _spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        import rclpy
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or not rclpy.ok():
                return done()
            rclpy.spin_once(self.node, timeout_sec=min(0.05, left))
        return True

    def wait_for_node(self) -> None:
        """Wait until the node subscribes to the clouds and publishes grasps.

        :raises BagTimeoutError: when it does not appear within ``discovery_timeout``.
        """
        if self._ready:
            return
        ok = self._spin_until(lambda: self._pub.get_subscription_count() > 0
                              and self.node.count_publishers(self.grasps_topic) > 0,
                              self.discovery_timeout)
        if not ok:
            raise BagTimeoutError(
                f'no node subscribes to {self._pub.topic_name} and publishes '
                f'{self.grasps_topic} after {self.discovery_timeout:g} s; start gpr_inference '
                '(with the same ROS_DOMAIN_ID) or replay without --via-node')
        self._ready = True

    def __call__(self, cloud: PointCloud2) -> tuple[GraspArray, MarkerArray | None]:
        """Send one cloud and wait for its grasps (and markers).

        :param cloud: the cloud (its stamp identifies the answer).
        :return: grasps and markers (None when the node publishes none).
        :raises BagTimeoutError: when no answer arrives within ``timeout``.
        :raises BagError: when the node is gone (nothing subscribes to the clouds any more).
        """
        self.wait_for_node()
        key = _stamp_key(cloud.header.stamp)
        self._grasps.clear()
        self._markers.clear()
        deadline = time.monotonic() + self.timeout
        answered = False
        while not answered:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pub.publish(cloud)
            window = min(left, self.resend) if self.resend > 0 else left
            answered = self._spin_until(lambda: key in self._grasps, window)
        if not answered and self._pub.get_subscription_count() == 0:
            raise BagError(f'the node listening on {self._pub.topic_name} went away; restart '
                           'gpr_inference and replay again')
        if not answered:
            raise BagTimeoutError(
                f'no GraspArray stamped {key[0]}.{key[1]:09d} on {self.grasps_topic} within '
                f'{self.timeout:g} s of publishing the cloud on {self._pub.topic_name}; is '
                'gpr_inference running and healthy (a cloud it rejects gets no answer)?')
        if self._markers_seen is not False:
            got = self._spin_until(lambda: key in self._markers, self.markers_timeout)
            if self._markers_seen is None:
                self._markers_seen = got  # a node that sends no markers is not waited for again
        return self._grasps[key], self._markers.get(key)

    def destroy(self) -> None:
        """Remove the publisher and subscriptions from the node."""
        self.node.destroy_publisher(self._pub)
        for sub in self._subs:
            self.node.destroy_subscription(sub)


# --- recording ---------------------------------------------------------------------------------

def _qos_time(duration: Any) -> QosTime:
    ns = int(getattr(duration, 'nanoseconds', 0))
    if ns <= 0:
        return QosTime(0, 0)
    if ns >= 2**63 - 1 or ns // 1_000_000_000 >= 2**31 - 1:  # "infinite" as rosbag2 writes it
        return QosTime(2147483647, 4294967295)
    return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)


def _bag_qos(profile: QoSProfile) -> Qos:
    """rclpy QoS -> the rosbags record stored in the bag (the enums share their values)."""
    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)),
               deadline=_qos_time(profile.deadline), lifespan=_qos_time(profile.lifespan),
               liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


class BagRecorder:
    """Record topics of a running system into a :class:`BagWriter`.

    Topics are subscribed as soon as discovery shows a publisher (their type taken from the
    graph) with raw subscriptions, and each message's CDR is written as received, stamped
    with the node clock. The subscription QoS follows the publishers (reliable only when all
    are reliable; transient-local when all are, so latched status is not missed), as
    ``ros2 bag record`` does. Spin ``node`` to record; call :meth:`discover` periodically (a
    timer does it) to pick up topics that appear later.
    """

    def __init__(self, node: Node, writer: BagWriter, topics: Sequence[str], *,
                 discovery_period: float = 0.5, depth: int = 10) -> None:
        """Start recording.

        :param node: the recording node.
        :param writer: the open output bag.
        :param topics: topic names (relative names resolve against the root namespace).
        :param discovery_period: seconds between graph checks for new topics.
        :param depth: subscription queue depth.
        """
        if not topics:
            raise BagError('no topics to record; name at least one')
        self.node = node
        self.writer = writer
        self.topics = [_normalise_topic(t) for t in topics]
        self.depth = depth
        self.types: dict[str, str] = {}
        self.notes: list[str] = []
        self._subs: dict[str, Any] = {}
        self.discover()
        self._timer = node.create_timer(discovery_period, self.discover)

    @property
    def counts(self) -> Mapping[str, int]:
        """Messages written per topic."""
        return dict(self.writer.counts)

    @property
    def missing(self) -> list[str]:
        """Requested topics not seen on the graph yet."""
        return [t for t in self.topics if t not in self._subs]

    def discover(self) -> None:
        """Subscribe to every requested topic that has a publisher now."""
        if not self.missing:
            return
        graph = dict(self.node.get_topic_names_and_types())
        for topic in self.missing:
            types = graph.get(topic)
            if not types:
                continue
            type_name = types[0]
            if len(types) > 1:
                self.notes.append(f'{topic} has several types {types}; recording {type_name}')
            try:
                cls = message_class(type_name)
                infos = self.node.get_publishers_info_by_topic(topic)
                profiles = [i.qos_profile for i in infos]
                self.writer.add_topic(topic, type_name, [_bag_qos(p) for p in profiles])
            except BagError as err:
                self.notes.append(f'not recording {topic}: {err}')
                self._subs[topic] = None
                continue
            reliable = bool(profiles) and all(
                p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
            latched = bool(profiles) and all(
                p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=self.depth,
                reliability=(ReliabilityPolicy.RELIABLE if reliable
                             else ReliabilityPolicy.BEST_EFFORT),
                durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                            else DurabilityPolicy.VOLATILE))
            self.types[topic] = type_name

            def callback(data: bytes, topic: str = topic, type_name: str = type_name) -> None:
                self.writer.write_raw(topic, type_name,
                                      self.node.get_clock().now().nanoseconds, data)

            self._subs[topic] = self.node.create_subscription(cls, topic, callback, qos,
                                                              raw=True)

    def destroy(self) -> None:
        """Stop recording (the writer stays open; close it yourself)."""
        self.node.destroy_timer(self._timer)
        for sub in self._subs.values():
            if sub is not None:
                self.node.destroy_subscription(sub)
        self._subs = {t: None for t in self._subs}
