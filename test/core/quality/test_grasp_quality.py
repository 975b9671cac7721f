"""Friction cones, antipodal force closure and the Ferrari–Canny ε (analytic cases)."""

import math

import numpy as np
import pytest

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.quality.ferrari_canny import (
    contact_wrenches,
    ferrari_canny_batch,
    ferrari_canny_epsilon,
)
from gpr_ros.core.quality.force_closure import antipodal_force_closure, friction_cone_edges

MU = 0.3
COM = np.zeros(3)
# Box 0.03 (x) x 0.06 (y) x 0.10 (z) centred at the origin: faces x = ±0.015.
NX, PX = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])


def _rotate_z(vector, degrees):
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return rot @ vector


def test_friction_cone_edges_lie_on_the_cone():
    normal = np.array([0.3, -0.2, 0.9])
    edges = friction_cone_edges(normal, MU, 8)
    assert edges.shape == (1, 8, 3)
    unit_n = normal / np.linalg.norm(normal)
    # Unit inward normal component, tangential part of length μ: angle atan(μ) to −n.
    np.testing.assert_allclose(edges[0] @ -unit_n, 1.0, atol=1e-12)
    tangential = edges[0] + unit_n
    np.testing.assert_allclose(np.linalg.norm(tangential, axis=1), MU, atol=1e-12)
    assert len({tuple(np.round(e, 9)) for e in edges[0]}) == 8


def test_friction_cone_edges_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        friction_cone_edges(PX, -0.1, 8)
    with pytest.raises(ConfigError):
        friction_cone_edges(PX, MU, 2)
    with pytest.raises(GeometryError):
        friction_cone_edges(np.zeros(3), MU, 8)


def test_antipodal_contacts_on_parallel_faces_pass():
    c1 = np.array([[-0.015, 0.01, 0.02], [-0.015, -0.02, 0.0]])
    c2 = np.array([[0.015, 0.01, 0.02], [0.015, -0.02, 0.0]])
    result = antipodal_force_closure(c1, np.tile(NX, (2, 1)), c2, np.tile(PX, (2, 1)), MU)
    assert result.dtype == bool and result.tolist() == [True, True]


@pytest.mark.parametrize("degrees, expected", [(10.0, True), (16.0, True), (17.5, False),
                                               (30.0, False)])
def test_antipodal_test_follows_the_cone_half_angle(degrees, expected):
    # Half-angle atan(0.3) = 16.70°: tilt the second contact's normal by `degrees`.
    c1, c2 = np.array([-0.015, 0, 0]), np.array([0.015, 0, 0])
    n2 = _rotate_z(PX, degrees)
    assert antipodal_force_closure(c1, NX, c2, n2, MU)[0] == expected
    # Same for the connecting line leaving the first cone (contacts offset sideways).
    offset = 0.03 * math.tan(math.radians(degrees))
    c2_shifted = np.array([0.015, offset, 0])
    assert antipodal_force_closure(c1, NX, c2_shifted, PX, MU)[0] == expected


def test_antipodal_fails_on_same_face_and_coincident_contacts():
    c1, c2 = np.array([-0.015, 0, 0]), np.array([-0.015, 0.02, 0])
    assert not antipodal_force_closure(c1, NX, c2, NX, MU)[0]
    assert not antipodal_force_closure(c1, NX, c1, PX, MU)[0]


def _box_epsilon(y=0.0, z=0.0, **kwargs):
    contacts = np.array([[-0.015, y, z], [0.015, y, z]])
    return ferrari_canny_epsilon(contacts, np.stack([NX, PX]), COM, MU, **kwargs)


def test_epsilon_positive_for_centred_antipodal_grasp():
    assert _box_epsilon(torque_scale=0.06) > 0.0


def test_epsilon_smaller_off_centre():
    centred = _box_epsilon(torque_scale=0.06)
    off = [_box_epsilon(y=d, torque_scale=0.06) for d in (0.01, 0.02, 0.03)]
    assert centred > off[0] > off[1] > off[2] > 0.0
    assert _box_epsilon(z=0.04, torque_scale=0.06) < centred


def test_epsilon_zero_without_force_closure():
    same_face = np.array([[-0.015, 0.0, 0.0], [-0.015, 0.02, 0.0]])
    assert ferrari_canny_epsilon(same_face, np.stack([NX, NX]), COM, MU, torque_scale=0.06) == 0
    # Opposite faces, but the normal of the second contact is tilted 40° out of the cone.
    tilted = np.stack([NX, _rotate_z(PX, 40.0)])
    box = np.array([[-0.015, 0, 0], [0.015, 0, 0]])
    assert ferrari_canny_epsilon(box, tilted, COM, MU, torque_scale=0.06) == 0.0
    # Hard point contacts cannot resist torque about the contact axis.
    assert _box_epsilon(torsional_friction=0.0, torque_scale=0.06) == 0.0


def test_epsilon_grows_with_friction():
    assert _box_epsilon(torque_scale=0.06) < ferrari_canny_epsilon(
        np.array([[-0.015, 0, 0], [0.015, 0, 0]]), np.stack([NX, PX]), COM, 0.6,
        torque_scale=0.06,
    )


def test_epsilon_is_unit_invariant():
    # Scaling every length by s (contacts, COM, L, γ) leaves the normalised wrenches unchanged.
    rng = np.random.default_rng(3)
    contacts = rng.normal(size=(3, 3)) * 0.03
    normals = contacts / np.linalg.norm(contacts, axis=1)[:, None]
    com = np.array([0.001, -0.002, 0.0])
    base = ferrari_canny_epsilon(contacts, normals, com, MU, torsional_friction=0.001,
                                 torque_scale=0.05)
    scaled = ferrari_canny_epsilon(contacts * 10, normals, com * 10, MU,
                                   torsional_friction=0.01, torque_scale=0.5)
    assert base == pytest.approx(scaled, rel=1e-6, abs=1e-12)


def test_default_torque_scale_is_largest_contact_distance():
    contacts = np.array([[-0.015, 0.01, 0], [0.015, 0.01, 0]])
    normals = np.stack([NX, PX])
    dist = float(np.linalg.norm(contacts[0]))
    assert ferrari_canny_epsilon(contacts, normals, COM, MU) == pytest.approx(
        ferrari_canny_epsilon(contacts, normals, COM, MU, torque_scale=dist)
    )
    wrenches = contact_wrenches(contacts, normals, COM, MU, 8, 0.001, 0.05)
    assert wrenches.shape == (2 * (8 + 2), 6)


def test_batch_matches_single_grasps():
    rng = np.random.default_rng(0)
    n = 40
    c1 = rng.normal(size=(n, 3)) * 0.02
    c2 = c1 + np.array([0.03, 0.0, 0.0]) + rng.normal(size=(n, 3)) * 0.003
    n1 = np.tile(NX, (n, 1)) + rng.normal(size=(n, 3)) * 0.1
    n2 = -n1 + rng.normal(size=(n, 3)) * 0.1
    batch = ferrari_canny_batch(c1, n1, c2, n2, COM, MU, torque_scale=0.07)
    single = [
        ferrari_canny_epsilon(np.stack([c1[i], c2[i]]), np.stack([n1[i], n2[i]]), COM, MU,
                              torque_scale=0.07)
        for i in range(n)
    ]
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-12)
    assert np.any(batch > 0) and np.any(batch == 0)
    # The antipodal grasps (well inside both cones) are in force closure.
    inside = antipodal_force_closure(c1, n1, c2, n2, MU * 0.8)
    assert np.all(batch[inside] > 0)


def test_batch_rejects_mismatched_lengths():
    with pytest.raises(GeometryError):
        ferrari_canny_batch(np.zeros((2, 3)), np.tile(NX, (2, 1)), np.ones((3, 3)),
                            np.tile(PX, (3, 1)), COM)
