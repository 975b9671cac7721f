"""Cluttered bin scenes in MuJoCo (paper Sec. IV-B, multi-object dataset generation).

Objects are sampled, given random poses and dropped into a static bin one after the other;
each falls and settles before the next is released. The settled 6-D poses and a depth
observation of the bin (:mod:`gpr_ros.core.sim.camera`) form one dataset scene.

World frame: z up, the bin floor is the plane z = 0 and the bin's inner box is centred on the
origin. The floor is modelled by the ground plane (the bin stands on it); the four walls are
static boxes. Objects that fall over a wall land on the same plane outside the bin.

Model layout (built with :class:`mujoco.MjSpec`, so other bodies can be added through
``spec_hooks`` before compiling, e.g. a free-floating gripper):

- geom group :data:`GROUP_STATIC` (0): ground plane ``ground`` and walls ``bin_wall_*``;
- one free body ``object_<i>`` per scene object (geom group :data:`GROUP_OBJECTS`, 1) with one
  convex mesh geom per collision part; the body frame is the object frame of its
  :class:`SceneObjectSpec` (origin at the centre of mass);
- objects not in the scene are *parked*: moved far below and away from the bin, with
  collisions off (contype = conaffinity = 0) and gravity compensated, so they stay put and
  are invisible to the camera.

Poses are reported as positions plus quaternions in the project's ROS order (x, y, z, w),
and as 4x4 object-to-world transforms. MuJoCo's own order is (w, x, y, z).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import math
import time
from typing import Any

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.sim.camera import (
    CameraConfig,
    NoiseConfig,
    Observation,
    RoiBox,
    capture,
)
from gpr_ros.core.sim.errors import ModelBuildError, SimulationError, UnstableSimulationError
from gpr_ros.core.validation import (
    config_from_dict as _config_from_dict,
)
from gpr_ros.core.validation import (
    config_to_dict as _config_to_dict,
)
from gpr_ros.core.validation import (
    integer as _integer,
)
from gpr_ros.core.validation import (
    non_negative as _non_negative,
)
from gpr_ros.core.validation import (
    positive as _positive,
)
from gpr_ros.core.validation import (
    real as _real,
)

__all__ = [
    "GROUP_OBJECTS",
    "GROUP_STATIC",
    "BinConfig",
    "BinWorld",
    "SceneConfig",
    "SceneObjectSpec",
    "SceneState",
    "add_bin",
    "add_scene_object",
    "make_spec",
    "sample_objects",
]

#: Geom group of the ground plane and the bin walls.
GROUP_STATIC = 0
#: Geom group of the scene objects.
GROUP_OBJECTS = 1
#: Where parked object i waits: ``_PARK_ORIGIN + i · _PARK_SPACING`` along x.
_PARK_ORIGIN = np.array([50.0, 0.0, -20.0])
_PARK_SPACING = 2.0
#: An object whose centre of mass sinks below this is reported as fallen through, m.
_FLOOR_ESCAPE_Z = -0.05


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BinConfig:
    """The static bin, m.

    :ivar inner_x: inner length along world x.
    :ivar inner_y: inner length along world y.
    :ivar wall_height: wall height above the floor (z = 0).
    :ivar wall_thickness: wall thickness.
    :ivar friction: sliding friction of the floor and walls (MuJoCo uses the larger of the
        two geoms' coefficients for a contact).
    :ivar roi_margin_top: the region of interest extends this far above the walls.
    :ivar roi_margin_bottom: the region of interest starts this far below the floor, so noisy
        floor points are kept.
    :ivar roi_inset: the region of interest stays this far inside the inner walls, so points on
        the inner wall faces (which the camera sees near the rim) are not kept.
    """

    inner_x: float = 0.30
    inner_y: float = 0.30
    wall_height: float = 0.10
    wall_thickness: float = 0.01
    friction: float = 0.3
    roi_margin_top: float = 0.10
    roi_margin_bottom: float = 0.005
    roi_inset: float = 0.003

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on non-positive sizes, negative friction or margins.
        """
        for name in ("inner_x", "inner_y", "wall_height", "wall_thickness"):
            object.__setattr__(self, name, _positive(getattr(self, name), f"BinConfig.{name}"))
        for name in ("friction", "roi_margin_top", "roi_margin_bottom", "roi_inset"):
            value = _non_negative(getattr(self, name), f"BinConfig.{name}")
            object.__setattr__(self, name, value)
        if 2.0 * self.roi_inset >= min(self.inner_x, self.inner_y):
            raise ConfigError(
                f"BinConfig.roi_inset ({self.roi_inset}) leaves no region of interest inside "
                f"a {self.inner_x} x {self.inner_y} m bin"
            )

    def roi(self) -> RoiBox:
        """Return the inner volume of the bin (the cloud is cropped to it).

        :return: x, y within the inner walls less ``roi_inset``, z from −roi_margin_bottom to
            wall_height + roi_margin_top.
        """
        hx = 0.5 * self.inner_x - self.roi_inset
        hy = 0.5 * self.inner_y - self.roi_inset
        return RoiBox(
            lower=(-hx, -hy, -self.roi_margin_bottom),
            upper=(hx, hy, self.wall_height + self.roi_margin_top),
        )

    def contains_xy(self, positions: ArrayLike) -> NDArray[np.bool_]:
        """Test world positions for lying within the inner walls in x and y.

        :param positions: (..., 3) or (..., 2) positions, m.
        :return: (...) mask.
        """
        p = np.asarray(positions, dtype=np.float64)
        inside: NDArray[np.bool_] = (np.abs(p[..., 0]) <= 0.5 * self.inner_x) & (
            np.abs(p[..., 1]) <= 0.5 * self.inner_y
        )
        return inside

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: BinConfig = _config_from_dict(cls, data)
        return result


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are generated and simulated. Randomness comes from the ``rng`` arguments.

    :ivar num_objects: inclusive (min, max) range of the number m of objects per scene
        (the clutter-removal protocol of the paper uses 10).
    :ivar drop_height: gap between an object's bounding sphere and the higher of the bin rim
        and the top of the pile when it is released, m.
    :ivar spawn_margin: released objects' centres keep this distance from the inner walls in
        x and y, m.
    :ivar timestep: simulation step, s.
    :ivar settle_linear_speed: objects are at rest when every linear speed is below this, m/s.
    :ivar settle_angular_speed: … and every angular speed below this, rad/s.
    :ivar settle_hold_time: … for at least this long, s.
    :ivar check_interval: simulated time between rest checks, s.
    :ivar max_time_per_object: simulation time limit after each release, s.
    :ivar final_settle_time: time limit of the final settle after the last release, s.
    :ivar object_friction: sliding friction of the objects.
    :ivar object_torsional_friction: torsional friction of the objects, m (MuJoCo condim 6).
    :ivar object_rolling_friction: rolling friction of the objects, m; without it round
        objects keep rolling on the floor and scenes take the full time limit to settle.
    :ivar contact_timeconst: contact stiffness as MuJoCo solref time constant, s (small values
        limit interpenetration; keep >= 2·timestep).
    :ivar contact_dampratio: contact damping ratio (solref).
    :ivar solver_iterations: main solver iterations (Newton solver).
    :ivar impratio: frictional-to-normal impedance ratio (elliptic cones; > 1 reduces slip).
    """

    num_objects: tuple[int, int] = (5, 10)
    drop_height: float = 0.05
    spawn_margin: float = 0.03
    timestep: float = 0.002
    settle_linear_speed: float = 0.003
    settle_angular_speed: float = 0.05
    settle_hold_time: float = 0.05
    check_interval: float = 0.01
    max_time_per_object: float = 2.0
    final_settle_time: float = 2.0
    object_friction: float = 0.3
    object_torsional_friction: float = 0.005
    object_rolling_friction: float = 0.001
    contact_timeconst: float = 0.004
    contact_dampratio: float = 1.0
    solver_iterations: int = 50
    impratio: float = 1.0

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on an invalid object-count range, non-positive times or speeds,
            a contact time constant below 2·timestep, or negative friction.
        """
        setter = object.__setattr__
        try:
            low, high = self.num_objects
        except (TypeError, ValueError):
            raise ConfigError(
                f"SceneConfig.num_objects must be (min, max), got {self.num_objects!r}"
            ) from None
        low = _integer(low, "SceneConfig.num_objects[0]", 1)
        high = _integer(high, "SceneConfig.num_objects[1]", 1)
        if high < low:
            raise ConfigError(f"SceneConfig.num_objects must have min <= max, got {low, high}")
        setter(self, "num_objects", (low, high))
        for name in (
            "drop_height",
            "spawn_margin",
            "settle_hold_time",
            "object_friction",
            "object_torsional_friction",
            "object_rolling_friction",
        ):
            setter(self, name, _non_negative(getattr(self, name), f"SceneConfig.{name}"))
        for name in (
            "timestep",
            "settle_linear_speed",
            "settle_angular_speed",
            "check_interval",
            "max_time_per_object",
            "final_settle_time",
            "contact_timeconst",
            "contact_dampratio",
        ):
            setter(self, name, _positive(getattr(self, name), f"SceneConfig.{name}"))
        setter(
            self,
            "solver_iterations",
            _integer(self.solver_iterations, "SceneConfig.solver_iterations", 1),
        )
        impratio = _real(self.impratio, "SceneConfig.impratio")
        if impratio < 1.0:
            raise ConfigError(f"SceneConfig.impratio must be >= 1, got {impratio}")
        setter(self, "impratio", impratio)
        if self.contact_timeconst < 2.0 * self.timestep - 1e-12:
            raise ConfigError(
                f"SceneConfig.contact_timeconst ({self.contact_timeconst}) must be >= "
                f"2 * timestep ({2.0 * self.timestep}) for stable contacts"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values (tuples become lists).

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: SceneConfig = _config_from_dict(cls, data)
        return result


@dataclass(frozen=True, eq=False)
class SceneObjectSpec:
    """A rigid object as the simulator needs it.

    :ivar name: object name (need not be unique within a scene).
    :ivar parts: convex collision pieces ``(vertices (V, 3), faces (F, 3))`` in the object
        frame, m; the object frame's origin should be the centre of mass. MuJoCo collides and
        ray-casts the convex hull of each part's vertices, so the faces are only checked.
    :ivar mass: total mass, kg (distributed over the parts by volume).
    """

    name: str
    parts: tuple[tuple[NDArray[np.float64], NDArray[np.int64]], ...]
    mass: float

    def __post_init__(self) -> None:
        """Validate and freeze the arrays.

        :raises ConfigError: on an empty name or part list, malformed arrays, fewer than 4
            vertices in a part, face indices out of range, or a non-positive mass.
        """
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"SceneObjectSpec.name must be a non-empty str, got {self.name!r}")
        try:
            parts = tuple(self.parts)
        except TypeError:
            raise ConfigError("SceneObjectSpec.parts must be a sequence of (V, F)") from None
        if not parts:
            raise ConfigError(f"object {self.name!r} needs at least one collision part")
        frozen = []
        for j, part in enumerate(parts):
            try:
                verts_in, faces_in = part
                verts = np.array(verts_in, dtype=np.float64)
                faces = np.array(faces_in, dtype=np.int64)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"object {self.name!r} part {j} must be (vertices (V, 3), faces (F, 3))"
                ) from None
            if verts.ndim != 2 or verts.shape[1] != 3 or verts.shape[0] < 4:
                raise ConfigError(
                    f"object {self.name!r} part {j}: vertices must be (V >= 4, 3), "
                    f"got {verts.shape}"
                )
            if not np.all(np.isfinite(verts)):
                raise ConfigError(f"object {self.name!r} part {j}: non-finite vertices")
            if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 4:
                raise ConfigError(
                    f"object {self.name!r} part {j}: faces must be (F >= 4, 3), got {faces.shape}"
                )
            if faces.min() < 0 or faces.max() >= verts.shape[0]:
                raise ConfigError(
                    f"object {self.name!r} part {j}: face indices must be in "
                    f"[0, {verts.shape[0] - 1}]"
                )
            verts.flags.writeable = False
            faces.flags.writeable = False
            frozen.append((verts, faces))
        object.__setattr__(self, "parts", tuple(frozen))
        object.__setattr__(self, "mass", _positive(self.mass, f"object {self.name!r} mass"))

    def bounding_radius(self) -> float:
        """Return the largest distance of a vertex from the object origin, m.

        :return: the radius.
        """
        return max(float(np.linalg.norm(v, axis=1).max()) for v, _ in self.parts)


@dataclass(frozen=True, eq=False)
class SceneState:
    """A snapshot of the scene objects.

    Objects currently in the scene report their current pose; removed objects (fallen out of
    the bin, or taken out with :meth:`BinWorld.remove_object`) the pose they had when removed.

    :ivar names: object names, in object-index order.
    :ivar positions: (N, 3) object-frame origins in the world, m.
    :ivar quaternions: (N, 4) object orientations, (x, y, z, w), w >= 0.
    :ivar poses: (N, 4, 4) object-to-world transforms.
    :ivar in_bin: (N,) True for objects in the scene inside the bin.
    :ivar removed: indices of objects removed because they ended outside the bin (during the
        drop that produced this state).
    :ivar settle_times: (N,) simulated time each release took to come to rest, s (NaN for
        objects not released by the drop).
    :ivar settled: whether every rest check passed within its time limit.
    :ivar sim_time: simulated time of the drop, s.
    :ivar wall_time: wall-clock time of the drop, s.
    """

    names: tuple[str, ...]
    positions: NDArray[np.float64]
    quaternions: NDArray[np.float64]
    poses: NDArray[np.float64]
    in_bin: NDArray[np.bool_]
    removed: tuple[int, ...]
    settle_times: NDArray[np.float64]
    settled: bool
    sim_time: float
    wall_time: float


# ---------------------------------------------------------------------- model building


def make_spec(scene: SceneConfig) -> mujoco.MjSpec:
    """Create an empty spec with the simulation options of ``scene``.

    :param scene: the scene configuration.
    :return: a spec with the timestep, solver and contact settings (no bodies yet).
    """
    spec = mujoco.MjSpec()
    spec.modelname = "gpr_bin_world"
    spec.compiler.alignfree = False  # keep body frames = object frames
    spec.compiler.usethread = False
    option = spec.option
    option.timestep = scene.timestep
    option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    option.solver = mujoco.mjtSolver.mjSOL_NEWTON
    option.iterations = scene.solver_iterations
    option.ls_iterations = 20
    option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    option.impratio = scene.impratio
    return spec


def _solref(scene: SceneConfig) -> list[float]:
    return [scene.contact_timeconst, scene.contact_dampratio]


def add_bin(spec: mujoco.MjSpec, bin_config: BinConfig, scene: SceneConfig) -> None:
    """Add the ground plane (the bin floor, z = 0) and the four static walls.

    :param spec: the spec to extend.
    :param bin_config: bin dimensions and friction.
    :param scene: contact settings.
    """
    world = spec.worldbody
    friction = [bin_config.friction, 0.005, 0.0001]
    solref = _solref(scene)
    world.add_geom(
        name="ground",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[0.0, 0.0, 0.05],
        friction=friction,
        solref=solref,
        group=GROUP_STATIC,
        rgba=[0.6, 0.6, 0.6, 1.0],
    )
    t, h = bin_config.wall_thickness, bin_config.wall_height
    hx, hy = 0.5 * bin_config.inner_x, 0.5 * bin_config.inner_y
    walls = {
        "bin_wall_px": ([hx + 0.5 * t, 0.0, 0.5 * h], [0.5 * t, hy + t, 0.5 * h]),
        "bin_wall_nx": ([-hx - 0.5 * t, 0.0, 0.5 * h], [0.5 * t, hy + t, 0.5 * h]),
        "bin_wall_py": ([0.0, hy + 0.5 * t, 0.5 * h], [hx, 0.5 * t, 0.5 * h]),
        "bin_wall_ny": ([0.0, -hy - 0.5 * t, 0.5 * h], [hx, 0.5 * t, 0.5 * h]),
    }
    for name, (pos, half) in walls.items():
        world.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=pos,
            size=half,
            friction=friction,
            solref=solref,
            group=GROUP_STATIC,
            rgba=[0.3, 0.4, 0.7, 1.0],
        )


def _park_position(index: int) -> NDArray[np.float64]:
    return _PARK_ORIGIN + np.array([_PARK_SPACING * index, 0.0, 0.0])


def add_scene_object(
    spec: mujoco.MjSpec, obj: SceneObjectSpec, index: int, scene: SceneConfig
) -> mujoco.MjsBody:
    """Add object ``index`` as a parked free body ``object_<index>``.

    The body is compiled with gravity compensation on (the compiler must see a
    gravity-compensated body for MuJoCo to keep it switchable at run time) and collisions on;
    :meth:`BinWorld.build` parks it right after compiling and sets its mass to ``obj.mass``
    (inertia scaled alike).

    :param spec: the spec to extend.
    :param obj: the object.
    :param index: its index in the scene.
    :param scene: friction and contact settings.
    :return: the new body.
    """
    body = spec.worldbody.add_body(name=f"object_{index}", pos=_park_position(index).tolist())
    body.gravcomp = 1.0
    body.add_freejoint(name=f"object_{index}_joint")
    friction = [
        scene.object_friction,
        scene.object_torsional_friction,
        scene.object_rolling_friction,
    ]
    for j, (verts, _faces) in enumerate(obj.parts):
        mesh_name = f"object_{index}_part_{j}"
        spec.add_mesh(name=mesh_name, uservert=verts.reshape(-1).tolist())
        body.add_geom(
            name=mesh_name,
            type=mujoco.mjtGeom.mjGEOM_MESH,
            meshname=mesh_name,
            density=1000.0,
            condim=6,
            friction=friction,
            solref=_solref(scene),
            group=GROUP_OBJECTS,
            rgba=[0.8, 0.5, 0.2, 1.0],
        )
    return body


def sample_objects(
    pool: Sequence[SceneObjectSpec],
    scene: SceneConfig,
    rng: np.random.Generator,
    replace: bool = False,
) -> tuple[SceneObjectSpec, ...]:
    """Sample the m objects of a scene, m uniform in ``scene.num_objects``.

    :param pool: the object set.
    :param scene: gives the range of m.
    :param rng: random generator.
    :param replace: sample with replacement (the same object may appear more than once).
    :return: the sampled objects, in release order.
    :raises ConfigError: if the pool is empty, or smaller than m without replacement.
    """
    if not pool:
        raise ConfigError("the object pool is empty")
    low, high = scene.num_objects
    count = int(rng.integers(low, high + 1))
    if not replace and count > len(pool):
        raise ConfigError(
            f"cannot sample {count} distinct objects from a pool of {len(pool)}; "
            "enlarge the pool, lower num_objects or pass replace=True"
        )
    chosen = rng.choice(len(pool), size=count, replace=replace)
    return tuple(pool[int(i)] for i in chosen)


def _random_quaternion_wxyz(rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniformly distributed rotation (normalised 4-D Gaussian), MuJoCo order."""
    while True:
        q = rng.standard_normal(4)
        norm = float(np.linalg.norm(q))
        if norm > 1e-6:
            return q / norm


def _pose_matrices(xpos: NDArray[np.float64], xmat: NDArray[np.float64]) -> NDArray[np.float64]:
    poses = np.zeros((xpos.shape[0], 4, 4))
    poses[:, :3, :3] = xmat.reshape(-1, 3, 3)
    poses[:, :3, 3] = xpos
    poses[:, 3, 3] = 1.0
    return poses


# ---------------------------------------------------------------------- the world

#: A function that adds bodies to the spec before it is compiled.
SpecHook = Callable[[mujoco.MjSpec], None]


class BinWorld:
    """A MuJoCo world with a static bin and a set of droppable objects.

    The world is rebuilt by :meth:`build` (or :meth:`drop_objects`) for each scene; it starts
    as an empty bin. Use one instance per thread: MuJoCo is deterministic on one machine, so
    the same objects and the same rng seed reproduce the same poses and point clouds.

    :param bin_config: the bin.
    :param scene: simulation settings.
    :param spec_hooks: functions called with the spec after the bin and objects are added and
        before compiling, to add further bodies (they must not use the names ``ground``,
        ``bin_wall_*`` or ``object_*``).
    """

    def __init__(
        self,
        bin_config: BinConfig | None = None,
        scene: SceneConfig | None = None,
        spec_hooks: Sequence[SpecHook] = (),
    ) -> None:
        """Build the empty bin world (see the class docstring for the parameters)."""
        self._bin = bin_config if bin_config is not None else BinConfig()
        self._scene = scene if scene is not None else SceneConfig()
        self._hooks = tuple(spec_hooks)
        self._objects: tuple[SceneObjectSpec, ...] = ()
        self.build(())

    # -------------------------------------------------------------- properties

    @property
    def model(self) -> mujoco.MjModel:
        """The compiled MuJoCo model."""
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        """The MuJoCo data."""
        return self._data

    @property
    def bin_config(self) -> BinConfig:
        """The bin configuration."""
        return self._bin

    @property
    def scene_config(self) -> SceneConfig:
        """The scene configuration."""
        return self._scene

    @property
    def objects(self) -> tuple[SceneObjectSpec, ...]:
        """The objects of the current model, in object-index order."""
        return self._objects

    @property
    def num_objects(self) -> int:
        """Number of objects in the current model (in the scene or not)."""
        return len(self._objects)

    @property
    def in_scene(self) -> NDArray[np.bool_]:
        """(N,) True for objects that have been released and not removed (a copy)."""
        return self._active.copy()

    @property
    def object_body_ids(self) -> NDArray[np.int64]:
        """(N,) MuJoCo body id of each object (a copy)."""
        return self._body_ids.copy()

    @property
    def geom_object_index(self) -> NDArray[np.int32]:
        """(ngeom,) object index of each geom, −1 for geoms of other bodies (a copy)."""
        return self._geom_object.copy()

    # -------------------------------------------------------------- building

    def build(self, objects: Sequence[SceneObjectSpec]) -> None:
        """Rebuild the model with the bin, ``objects`` (all parked) and the hook bodies.

        :param objects: the scene objects; object i becomes body ``object_<i>``.
        :raises ModelBuildError: if MuJoCo cannot compile the model (e.g. degenerate meshes).
        """
        objects = tuple(objects)
        for obj in objects:
            if not isinstance(obj, SceneObjectSpec):
                raise ModelBuildError(f"objects must be SceneObjectSpec, got {type(obj)!r}")
        spec = make_spec(self._scene)
        add_bin(spec, self._bin, self._scene)
        for i, obj in enumerate(objects):
            add_scene_object(spec, obj, i, self._scene)
        for hook in self._hooks:
            hook(spec)
        try:
            model = spec.compile()
        except Exception as err:  # MuJoCo raises ValueError with the compiler message
            names = [obj.name for obj in objects]
            raise ModelBuildError(
                f"MuJoCo could not compile the bin world with objects {names}: {err}"
            ) from None
        data = mujoco.MjData(model)
        body_ids = np.array(
            [
                mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"object_{i}")
                for i in range(len(objects))
            ],
            dtype=np.int64,
        )
        for i, obj in enumerate(objects):
            body = int(body_ids[i])
            scale = obj.mass / float(model.body_mass[body])
            model.body_mass[body] *= scale
            model.body_inertia[body] *= scale
        mujoco.mj_setConst(model, data)
        self._spec = spec
        self._model = model
        self._data = data
        self._objects = objects
        self._body_ids = body_ids
        joint_ids = model.body_jntadr[body_ids] if len(objects) else np.zeros(0, np.int64)
        self._qpos_adr = np.asarray(model.jnt_qposadr[joint_ids], dtype=np.int64)
        self._dof_adr = np.asarray(model.jnt_dofadr[joint_ids], dtype=np.int64)
        self._geom_object = np.full(model.ngeom, -1, dtype=np.int32)
        for i, body in enumerate(body_ids):
            self._geom_object[model.geom_bodyid == body] = i
        self._object_geoms = [np.flatnonzero(model.geom_bodyid == b) for b in body_ids]
        # Collision bits as compiled; parking zeroes them (geom and body level: MuJoCo's
        # broad phase filters body pairs by body_contype / body_conaffinity first).
        self._contype = model.geom_contype.copy()
        self._conaffinity = model.geom_conaffinity.copy()
        self._body_contype = model.body_contype.copy()
        self._body_conaffinity = model.body_conaffinity.copy()
        self._active = np.zeros(len(objects), dtype=bool)
        self._removed_pose = np.tile(np.eye(4), (len(objects), 1, 1))
        for i in range(len(objects)):
            self._park(i)
        mujoco.mj_forward(model, data)

    # -------------------------------------------------------------- object handling

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise SimulationError(f"object index must be an int, got {index!r}")
        if not 0 <= int(index) < len(self._objects):
            raise SimulationError(
                f"object index {index} out of range for {len(self._objects)} objects"
            )
        return int(index)

    def _set_free_pose(
        self, index: int, position: NDArray[np.float64], quat_wxyz: NDArray[np.float64]
    ) -> None:
        adr = int(self._qpos_adr[index])
        self._data.qpos[adr : adr + 3] = position
        self._data.qpos[adr + 3 : adr + 7] = quat_wxyz
        dof = int(self._dof_adr[index])
        self._data.qvel[dof : dof + 6] = 0.0

    def _park(self, index: int) -> None:
        geoms, body = self._object_geoms[index], self._body_ids[index]
        self._model.geom_contype[geoms] = 0
        self._model.geom_conaffinity[geoms] = 0
        self._model.body_contype[body] = 0
        self._model.body_conaffinity[body] = 0
        self._model.body_gravcomp[body] = 1.0
        self._set_free_pose(index, _park_position(index), np.array([1.0, 0.0, 0.0, 0.0]))
        self._active[index] = False

    def _release(
        self, index: int, position: NDArray[np.float64], quat_wxyz: NDArray[np.float64]
    ) -> None:
        geoms, body = self._object_geoms[index], self._body_ids[index]
        self._model.geom_contype[geoms] = self._contype[geoms]
        self._model.geom_conaffinity[geoms] = self._conaffinity[geoms]
        self._model.body_contype[body] = self._body_contype[body]
        self._model.body_conaffinity[body] = self._body_conaffinity[body]
        self._model.body_gravcomp[body] = 0.0
        self._set_free_pose(index, position, quat_wxyz)
        self._active[index] = True

    def _hold_parked(self) -> None:
        """Reset parked bodies exactly to their parking pose (no drift over long runs)."""
        for i in np.flatnonzero(~self._active):
            self._set_free_pose(int(i), _park_position(int(i)), np.array([1.0, 0.0, 0.0, 0.0]))

    def remove_object(self, index: int) -> None:
        """Take an object out of the scene (e.g. after a successful grasp).

        The body is parked: collisions off, out of the camera's view, held still. Its pose at
        removal is kept for :meth:`state`.

        :param index: object index.
        :raises SimulationError: on an invalid index.
        """
        i = self._check_index(index)
        if self._active[i]:
            self._removed_pose[i] = self.object_poses()[i]
        self._park(i)
        mujoco.mj_forward(self._model, self._data)

    def object_poses(self) -> NDArray[np.float64]:
        """Return the current object-to-world transforms (parked objects at their parking spot).

        :return: (N, 4, 4) transforms.
        """
        ids = self._body_ids
        return _pose_matrices(self._data.xpos[ids], self._data.xmat[ids])

    def state(
        self,
        removed: Sequence[int] = (),
        settle_times: ArrayLike | None = None,
        settled: bool = True,
        sim_time: float = 0.0,
        wall_time: float = 0.0,
    ) -> SceneState:
        """Return a snapshot of the object poses.

        :param removed: indices to report as removed during the last drop.
        :param settle_times: per-object settle times to report (NaN when omitted).
        :param settled: value of :attr:`SceneState.settled`.
        :param sim_time: value of :attr:`SceneState.sim_time`.
        :param wall_time: value of :attr:`SceneState.wall_time`.
        :return: the snapshot.
        """
        poses = self.object_poses()
        poses[~self._active] = self._removed_pose[~self._active]
        positions = poses[:, :3, 3].copy()
        quats = np.zeros((len(poses), 4))
        for i, pose in enumerate(poses):
            wxyz = np.empty(4)
            mujoco.mju_mat2Quat(wxyz, pose[:3, :3].reshape(-1))
            xyzw = np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])
            quats[i] = -xyzw if xyzw[3] < 0.0 else xyzw
        in_bin = self._active & self._bin.contains_xy(positions)
        times = (
            np.full(len(poses), np.nan)
            if settle_times is None
            else np.asarray(settle_times, dtype=np.float64)
        )
        return SceneState(
            names=tuple(obj.name for obj in self._objects),
            positions=positions,
            quaternions=quats,
            poses=poses,
            in_bin=in_bin,
            removed=tuple(int(i) for i in removed),
            settle_times=times,
            settled=bool(settled),
            sim_time=float(sim_time),
            wall_time=float(wall_time),
        )

    # -------------------------------------------------------------- simulation

    def step(self, n: int = 1) -> None:
        """Advance the simulation by ``n`` steps.

        :param n: number of steps, >= 0.
        :raises SimulationError: on a negative ``n``.
        :raises UnstableSimulationError: if MuJoCo reports a diverging simulation.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise SimulationError(f"n must be an int >= 0, got {n!r}")
        if n:
            mujoco.mj_step(self._model, self._data, nstep=int(n))
            self._check_stable()

    def _check_stable(self) -> None:
        warnings = self._data.warning
        for kind in (
            mujoco.mjtWarning.mjWARN_BADQACC,
            mujoco.mjtWarning.mjWARN_BADQPOS,
            mujoco.mjtWarning.mjWARN_BADQVEL,
        ):
            if warnings[int(kind)].number > 0:
                raise UnstableSimulationError(
                    f"MuJoCo reported {kind.name} at t = {self._data.time:.3f} s; reduce the "
                    "timestep or check the object meshes and masses"
                )

    def _at_rest(self) -> bool:
        active = np.flatnonzero(self._active)
        if active.size == 0:
            return True
        dofs = self._dof_adr[active][:, None] + np.arange(6)
        qvel = self._data.qvel[dofs]
        linear = float(np.max(np.einsum("ij,ij->i", qvel[:, :3], qvel[:, :3])))
        angular = float(np.max(np.einsum("ij,ij->i", qvel[:, 3:], qvel[:, 3:])))
        return (
            linear < self._scene.settle_linear_speed**2
            and angular < self._scene.settle_angular_speed**2
        )

    def settle(self, max_time: float) -> tuple[float, bool]:
        """Simulate until every object in the scene is at rest, or ``max_time`` has passed.

        At rest: all linear and angular speeds below the :class:`SceneConfig` thresholds at
        every check over ``settle_hold_time``.

        :param max_time: simulated time limit, s.
        :return: ``(elapsed simulated time, came to rest)``.
        :raises UnstableSimulationError: if the simulation diverges.
        """
        scene = self._scene
        steps = max(1, round(scene.check_interval / scene.timestep))
        chunk = steps * scene.timestep
        hold = max(1, math.ceil(scene.settle_hold_time / chunk - 1e-9))
        elapsed, calm = 0.0, 0
        while elapsed < max_time - 1e-12:
            mujoco.mj_step(self._model, self._data, nstep=steps)
            self._check_stable()
            self._hold_parked()
            elapsed += chunk
            calm = calm + 1 if self._at_rest() else 0
            if calm >= hold:
                mujoco.mj_forward(self._model, self._data)
                return elapsed, True
        mujoco.mj_forward(self._model, self._data)
        return elapsed, False

    def _pile_top(self) -> float:
        """Highest point of the bounding spheres of the objects in the scene, m."""
        active = np.flatnonzero(self._active)
        if active.size == 0:
            return 0.0
        geoms = np.concatenate([self._object_geoms[int(i)] for i in active])
        tops = self._data.geom_xpos[geoms, 2] + self._model.geom_rbound[geoms]
        return float(tops.max())

    def _outside(self, index: int) -> bool:
        position = self._data.xpos[self._body_ids[index]]
        if not np.all(np.isfinite(position)) or position[2] < _FLOOR_ESCAPE_Z:
            return True
        return not bool(self._bin.contains_xy(position))

    def drop_objects(
        self,
        objects: Sequence[SceneObjectSpec],
        rng: np.random.Generator,
        spawn_positions: Sequence[ArrayLike | None] | None = None,
    ) -> SceneState:
        """Rebuild the world with ``objects`` and drop them into the bin one after the other.

        Each object is released at rest with a uniformly random orientation, x and y uniform
        within the inner area shrunk by ``spawn_margin``, its bounding sphere ``drop_height``
        above the higher of the rim and the pile; the world is simulated until everything
        rests (or ``max_time_per_object``). An object that ends outside the inner walls is
        removed at once. After the last release a final settle runs and objects outside the
        bin are removed again.

        :param objects: the objects, in release order (see :func:`sample_objects`).
        :param rng: random generator (poses; nothing else draws from it).
        :param spawn_positions: optional per-object override of the release position of the
            object origin (``None`` entries keep the random one; the orientation is still
            drawn). For tests and for replaying scenes.
        :return: the settled state.
        :raises ModelBuildError: if the model cannot be built.
        :raises SimulationError: on a malformed ``spawn_positions``.
        :raises UnstableSimulationError: if the simulation diverges.
        """
        start = time.perf_counter()
        objects = tuple(objects)
        overrides: list[NDArray[np.float64] | None] = [None] * len(objects)
        if spawn_positions is not None:
            if len(spawn_positions) != len(objects):
                raise SimulationError(
                    f"spawn_positions must have one entry per object ({len(objects)}), "
                    f"got {len(spawn_positions)}"
                )
            for i, position in enumerate(spawn_positions):
                if position is not None:
                    p = np.asarray(position, dtype=np.float64)
                    if p.shape != (3,) or not np.all(np.isfinite(p)):
                        raise SimulationError(
                            f"spawn_positions[{i}] must be 3 finite numbers, got {position!r}"
                        )
                    overrides[i] = p
        self.build(objects)
        scene, bin_config = self._scene, self._bin
        half = np.array([0.5 * bin_config.inner_x, 0.5 * bin_config.inner_y])
        half = np.maximum(half - scene.spawn_margin, 0.0)
        settle_times = np.full(len(objects), np.nan)
        removed: list[int] = []
        settled_all = True
        sim_time = 0.0
        for i, obj in enumerate(objects):
            quat = _random_quaternion_wxyz(rng)
            xy = rng.uniform(-half, half)
            radius = obj.bounding_radius()
            z = max(bin_config.wall_height, self._pile_top()) + scene.drop_height + radius
            position = np.array([xy[0], xy[1], z])
            override = overrides[i]
            if override is not None:
                position = override
            self._release(i, position, quat)
            elapsed, rested = self.settle(scene.max_time_per_object)
            settle_times[i] = elapsed
            sim_time += elapsed
            settled_all &= rested
            if self._outside(i):
                self.remove_object(i)
                removed.append(i)
        elapsed, rested = self.settle(scene.final_settle_time)
        sim_time += elapsed
        settled_all &= rested
        for active in np.flatnonzero(self._active):
            if self._outside(int(active)):
                self.remove_object(int(active))
                removed.append(int(active))
        return self.state(
            removed=removed,
            settle_times=settle_times,
            settled=settled_all,
            sim_time=sim_time,
            wall_time=time.perf_counter() - start,
        )

    # -------------------------------------------------------------- sensing

    def observe(
        self,
        camera: CameraConfig | None = None,
        noise: NoiseConfig | None = None,
        rng: np.random.Generator | None = None,
        geomgroup: Sequence[int] | NDArray[Any] | None = None,
        exclude_body: int = -1,
    ) -> Observation:
        """Take a depth observation of the bin, cropped to :meth:`BinConfig.roi`.

        :param camera: the camera (default :class:`CameraConfig`).
        :param noise: the noise model; ``None`` gives clean data.
        :param rng: random generator; required when noise is enabled.
        :param geomgroup: optional 6 geom-group flags the rays see (e.g. to hide a gripper).
        :param exclude_body: a body the rays ignore (−1: none).
        :return: the observation, points labelled with object indices.
        :raises SimulationError: if noise is enabled without an ``rng``.
        """
        mujoco.mj_kinematics(self._model, self._data)
        return capture(
            self._model,
            self._data,
            camera if camera is not None else CameraConfig(),
            self._bin.roi(),
            noise,
            rng,
            self._geom_object,
            geomgroup,
            exclude_body,
        )
