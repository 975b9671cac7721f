"""Where gpr_ros's installed data (config/, launch/, models/) lives."""

from __future__ import annotations

from pathlib import Path
import sys

PACKAGE = 'gpr_ros'


def share_dir() -> Path:
    """Return the folder that holds ``config/``, ``launch/`` and ``models/``.

    Looked up, in order: the ament index (a colcon/ROS install), ``<prefix>/share/gpr_ros``
    (a pip install), and the source checkout next to the package (an editable install).

    :return: the folder.
    :raises FileNotFoundError: when none of them has a ``config/`` folder.
    """
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError, ValueError):
            pass
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE)
    candidates.append(Path(__file__).resolve().parent.parent)
    for path in candidates:
        if (path / 'config').is_dir():
            return path
    raise FileNotFoundError(
        f'gpr_ros share directory not found; looked in {", ".join(map(str, candidates))}')
