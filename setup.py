"""Install gpr_ros: an ament_python package that also installs with plain pip."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'gpr_ros'


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Map every file below ``folder`` to ``share/gpr_ros/<folder>/...`` for data_files."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(os.path.join(folder, '**', '*'), recursive=True)):
        if os.path.isfile(path) and '__pycache__' not in path:
            target = os.path.join('share', PACKAGE, os.path.dirname(path))
            entries.setdefault(target, []).append(path)
    return sorted(entries.items())


NODES = {
    # node executable -> module:function
    'gpr_smoke_server': 'gpr_ros.ros.smoke:main',
    'phoxi_camera': 'gpr_ros.ros.nodes.phoxi_camera:main',
    'gpr_inference': 'gpr_ros.ros.nodes.gpr_inference:main',
    'clutter_removal_supervisor': 'gpr_ros.ros.nodes.clutter_removal_supervisor:main',
    'sim_world': 'gpr_ros.ros.nodes.sim_world:main',
    'yumi_executor': 'gpr_ros.ros.nodes.yumi_executor:main',
}

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        *share_files('launch'),
        *share_files('config'),
        *share_files('models'),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='gpr_ros developers',
    maintainer_email='gpr-ros@users.noreply.github.com',
    description='GPR grasp pose refinement network as a ROS 2 grasping node suite',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'gpr-ros = gpr_ros.cli:main',
            *(f'{name} = {target}' for name, target in NODES.items()),
        ],
    },
)
