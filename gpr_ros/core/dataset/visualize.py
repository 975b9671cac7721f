"""Dataset statistics and pictures, rendered headless with matplotlib's Agg backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.dataset.labels import (
    POINT_BACKGROUND,
    POINT_CLASS_NAMES,
    POINT_NEGATIVE_COLLISION,
    POINT_POSITIVE,
    POINT_UNSUITABLE,
)
from gpr_ros.core.dataset.scene_format import scene_grasps
from gpr_ros.core.grasp import Grasps, GripperModel

#: Fig. 3 colours: light blue positive, dark blue negative (collision), orange unsuitable.
CLASS_COLOURS = {POINT_BACKGROUND: '#c8c8c8', POINT_POSITIVE: '#6ec6ff',
                 POINT_NEGATIVE_COLLISION: '#0d2c8c', POINT_UNSUITABLE: '#ff8c1a'}
#: Fig. 6a: grasp widths in 8 groups of 5 mm.
WIDTH_EDGES_MM = np.arange(0, 45, 5.0)


@dataclass
class DatasetStats:
    """Label balance and grasp statistics of a dataset."""

    scenes: int = 0
    points: int = 0
    class_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(4, np.int64))
    grasps_per_scene: list[int] = field(default_factory=list)
    objects_per_scene: list[int] = field(default_factory=list)
    widths: list[NDArray[np.float32]] = field(default_factory=list)
    scores: list[NDArray[np.float32]] = field(default_factory=list)

    def width_histogram(self) -> NDArray[np.int64]:
        """Counts of grasp widths in the Fig. 6a groups (mm edges ``WIDTH_EDGES_MM``, the last
        group open-ended up to the max opening)."""
        w = np.concatenate(self.widths) * 1000 if self.widths else np.zeros(0)
        edges = np.append(WIDTH_EDGES_MM[:-1], np.inf)
        return np.histogram(w, bins=edges)[0]

    def summary(self) -> str:
        """A human-readable table."""
        lines = [f'scenes: {self.scenes}   points: {self.points}']
        total = max(int(self.class_counts.sum()), 1)
        lines.append('point labels:')
        for k, name in enumerate(POINT_CLASS_NAMES):
            lines.append(f'  {name:<22} {int(self.class_counts[k]):>10}  '
                         f'{100 * self.class_counts[k] / total:6.2f} %')
        g = np.asarray(self.grasps_per_scene or [0])
        o = np.asarray(self.objects_per_scene or [0])
        lines.append(f'positive grasps per scene: mean {g.mean():.1f}, min {g.min()}, '
                     f'max {g.max()}   objects per scene: mean {o.mean():.1f}')
        hist = self.width_histogram()
        lines.append('grasp width (Fig. 6a):')
        for i, count in enumerate(hist):
            lo = WIDTH_EDGES_MM[i]
            hi = f'{WIDTH_EDGES_MM[i + 1]:.0f}' if i + 1 < len(WIDTH_EDGES_MM) - 1 else '50'
            lines.append(f'  [{lo:>4.0f}, {hi:>3}) mm  {int(count):>9}')
        if self.scores:
            s = np.concatenate(self.scores)
            if len(s):
                lines.append(f'grasp quality Q: median {np.median(s):.4f}, '
                             f'p10 {np.percentile(s, 10):.4f}, p90 {np.percentile(s, 90):.4f}')
        return '\n'.join(lines)


def dataset_stats(scenes: Iterable[dict[str, NDArray[Any]]]) -> DatasetStats:
    """Accumulate statistics over scenes.

    :param scenes: scene dicts (see :mod:`.scene_format`).
    :return: the statistics.
    """
    stats = DatasetStats()
    for scene in scenes:
        stats.scenes += 1
        stats.points += len(scene['points'])
        stats.class_counts += np.bincount(scene['point_class'].astype(np.int64), minlength=4)[:4]
        stats.grasps_per_scene.append(len(scene['grasp_width']))
        stats.objects_per_scene.append(int(np.sum(scene['object_in_bin'])))
        stats.widths.append(np.asarray(scene['grasp_width'], dtype=np.float32))
        stats.scores.append(np.asarray(scene['grasp_score'], dtype=np.float32))
    return stats


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt, plt.figure(figsize=size, dpi=110)


def plot_stats(stats: DatasetStats, png: Path) -> None:
    """Save the label balance and the width histogram (as in Fig. 6a) as a PNG."""
    plt, fig = _figure((11, 4))
    ax = fig.add_subplot(1, 3, 1)
    ax.bar(range(4), stats.class_counts, color=[CLASS_COLOURS[k] for k in range(4)])
    ax.set_xticks(range(4), ['backgr.', 'positive', 'neg. coll.', 'unsuitable'])
    ax.set_yscale('log')
    ax.set_title('point labels')
    ax = fig.add_subplot(1, 3, 2)
    hist = stats.width_histogram()
    labels = [f'{int(e)}-{int(e) + 5}' for e in WIDTH_EDGES_MM[:-1]]
    labels[-1] = f'{int(WIDTH_EDGES_MM[-2])}-50'
    ax.bar(range(len(hist)), hist, color='#3b7dd8')
    ax.set_xticks(range(len(hist)), labels, rotation=45)
    ax.set_xlabel('grasp width (mm)')
    ax.set_title('grasp widths (Fig. 6a)')
    ax = fig.add_subplot(1, 3, 3)
    scores = np.concatenate(stats.scores) if stats.scores else np.zeros(0)
    ax.hist(scores, bins=30, color='#49a35b')
    ax.set_xlabel('Q (Ferrari-Canny)')
    ax.set_title('grasp quality')
    fig.suptitle(f'{stats.scenes} scenes, {stats.points} points')
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def gripper_polylines(grasps: Grasps, gripper: GripperModel) -> NDArray[np.float64]:
    """Line drawings of grasps: (N, 6, 3) vertices of the U-shaped gripper plus its stem.

    Order: stem end, palm centre, then the +r finger tip, +r finger base, -r finger base,
    -r finger tip, drawn as two strokes by :func:`render_scene_png`.
    """
    n = len(grasps)
    half = 0.5 * grasps.width[:, None]
    base = grasps.center - gripper.finger_depth * grasps.approach
    r = grasps.closing
    tip_pos, tip_neg = grasps.center + half * r, grasps.center - half * r
    base_pos, base_neg = base + half * r, base - half * r
    stem = base - gripper.palm_depth * grasps.approach
    return np.stack([stem, base, tip_pos, base_pos, base_neg, tip_neg], axis=1).reshape(n, 6, 3)


def render_scene_png(scene: dict[str, NDArray[Any]], png: Path, *, max_grasps: int = 25,
                     seed: int = 0, gripper: GripperModel | None = None) -> int:
    """Draw a labelled scene: the cloud coloured by class (Fig. 3) and grasps by Q (Fig. 2b).

    Left: the camera's view of the cloud with the point classes. Right: a 3D view of the cloud
    with up to ``max_grasps`` positive grasps (sampled, best first) drawn as grippers coloured
    from red (low Q) to green (high Q).

    :param scene: a scene dict.
    :param png: output file.
    :param max_grasps: grasps drawn.
    :param seed: seed of the grasp sample.
    :param gripper: gripper drawn (default YuMi).
    :return: the number of grasps drawn.
    """
    gripper = gripper or GripperModel()
    plt, fig = _figure((13, 6))
    pts = np.asarray(scene['points'], dtype=np.float64)
    cls = np.asarray(scene['point_class'])
    ax = fig.add_subplot(1, 2, 1)
    for k in (POINT_BACKGROUND, POINT_UNSUITABLE, POINT_NEGATIVE_COLLISION, POINT_POSITIVE):
        sel = cls == k
        ax.scatter(pts[sel, 0], pts[sel, 1], s=1.5, c=CLASS_COLOURS[k],
                   label=f'{POINT_CLASS_NAMES[k]} ({int(sel.sum())})', rasterized=True)
    ax.set_aspect('equal')
    ax.invert_yaxis()  # optical frame: +Y points down in the image
    ax.set_xlabel('x (m, camera frame)')
    ax.set_ylabel('y (m)')
    ax.legend(loc='upper right', markerscale=6, fontsize=8)
    ax.set_title(f'scene {int(scene["scene_index"][0])}: point labels (Fig. 3 colours)')

    ax3 = fig.add_subplot(1, 2, 2, projection='3d')
    step = max(1, len(pts) // 6000)
    ax3.scatter(pts[::step, 0], pts[::step, 1], pts[::step, 2], s=0.5, c='#9a9a9a',
                depthshade=False, rasterized=True)
    grasps = scene_grasps(scene)
    drawn = 0
    if len(grasps):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(grasps), size=min(max_grasps, len(grasps)),
                                  replace=False))
        chosen = grasps[pick]
        q = chosen.score
        qn = (q - q.min()) / max(float(np.ptp(q)), 1e-12)
        cmap = plt.get_cmap('RdYlGn')
        lines = gripper_polylines(chosen, gripper)
        for i in np.argsort(qn):
            colour = cmap(qn[i])
            stem, palm, tip_p, base_p, base_n, tip_n = lines[i]
            for a, b in ((stem, palm), (tip_p, base_p), (base_p, base_n), (base_n, tip_n)):
                ax3.plot(*np.stack([a, b]).T, color=colour, linewidth=1.6)
            drawn += 1
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(float(q.min()),
                                                                 float(q.max())))
        fig.colorbar(sm, ax=ax3, shrink=0.6, label='Q (Ferrari-Canny)')
    ax3.view_init(elev=-60, azim=-90)  # looking roughly along the camera's view axis
    ax3.set_xlabel('x')
    ax3.set_ylabel('y')
    ax3.set_zlabel('z (depth)')
    ax3.set_title(f'{drawn} of {len(grasps)} positive grasps, coloured by Q (Fig. 2b)')
    centre = np.median(pts, axis=0)
    span = 0.5 * max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 0.05)
    ax3.set_xlim(centre[0] - span, centre[0] + span)
    ax3.set_ylim(centre[1] - span, centre[1] + span)
    ax3.set_zlim(centre[2] - span, centre[2] + span)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return drawn
