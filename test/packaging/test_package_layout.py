"""The repository builds as two ROS 2 packages with colcon and installs the expected files."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLCON = shutil.which('colcon', path=str(Path(sys.executable).parent)) or shutil.which('colcon')


def _colcon(*args: str, cwd: Path = ROOT) -> str:
    assert COLCON, 'colcon is not installed (make setup installs it)'
    done = subprocess.run([COLCON, '--log-base', os.devnull, *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=300)
    return done.stdout


def test_colcon_finds_both_packages_with_base_paths() -> None:
    # colcon stops descending at the root package.xml: gpr_msgs must be named explicitly.
    found = _colcon('list', '--base-paths', '.', 'gpr_msgs')
    rows = {line.split()[0]: line.split()[2] for line in found.strip().splitlines()}
    assert rows == {'gpr_msgs': '(ros.ament_cmake)', 'gpr_ros': '(ros.ament_python)'}
    only_root = _colcon('list', '--base-paths', '.')
    assert [line.split()[0] for line in only_root.strip().splitlines()] == ['gpr_ros']


def test_colcon_build_installs_ros_layout(tmp_path: Path) -> None:
    _colcon('build', '--base-paths', str(ROOT), '--packages-select', 'gpr_ros',
            '--build-base', str(tmp_path / 'build'), '--install-base', str(tmp_path / 'install'),
            cwd=tmp_path)
    prefix = tmp_path / 'install' / 'gpr_ros'
    share = prefix / 'share' / 'gpr_ros'
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'gpr_ros').is_file()
    assert (share / 'package.xml').is_file()
    assert (share / 'config').is_dir()
    # ros2 run looks for executables in lib/<package>
    assert os.access(prefix / 'lib' / 'gpr_ros' / 'gpr-ros', os.X_OK)
    assert os.access(prefix / 'lib' / 'gpr_ros' / 'gpr_smoke_server', os.X_OK)


@pytest.mark.parametrize('path', ['package.xml', 'gpr_msgs/package.xml'])
def test_package_manifests_are_format_3_with_maintainer_email(path: str) -> None:
    root = ET.parse(ROOT / path).getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    maintainer = root.find('maintainer')
    assert maintainer is not None and '@' in (maintainer.get('email') or '')
    build_type = root.find('export/build_type')
    assert build_type is not None
    assert build_type.text == ('ament_python' if path == 'package.xml' else 'ament_cmake')


def test_cli_lists_subcommands() -> None:
    out = subprocess.run([sys.executable, '-m', 'gpr_ros.cli', '--help'], capture_output=True,
                         text=True, check=True).stdout
    assert 'demo' in out and 'info' in out


def test_share_dir_resolves_config() -> None:
    from gpr_ros.resources import share_dir
    assert (share_dir() / 'config').is_dir()
