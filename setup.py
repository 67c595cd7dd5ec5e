"""pip install of the Python packages (node + offline training) into a plain virtual environment.

Robots build with colcon instead (CMakeLists.txt installs the same sources); the interfaces in msg/ are
always built by rosidl through CMake (scripts/setup.sh does both steps here).
"""

import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'hand_recon_ros'


def share(folder, pattern='*'):
    files = sorted(f for f in glob.glob(os.path.join(folder, '**', pattern), recursive=True) if os.path.isfile(f))
    by_dir = {}
    for f in files:
        by_dir.setdefault(os.path.join('share', PACKAGE, os.path.dirname(f)), []).append(f)
    return list(by_dir.items())


setup(
    # Distribution name differs from the ROS package name on purpose: the rosidl build registers an
    # egg-info called hand_recon_ros for the generated message module, and pip must never uninstall it.
    name='hand-recon-python',
    version='0.1.0',
    description='Two-hand 3D reconstruction (ACR + IHMR) for ROS 2: node, model code, offline training',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['hand_recon_ros', 'hand_recon_ros.*', 'hand_recon_train', 'hand_recon_train.*']),
    package_data={'hand_recon_train': ['configs/*.yaml']},
    data_files=share('launch') + share('config') + share('models'),
    entry_points={
        'console_scripts': [
            'hand_recon_node = hand_recon_ros.ros.node:main',
            'hand_recon_demo = hand_recon_ros.tools.demo:main',
            'hand_recon_bag_eval = hand_recon_ros.tools.bag_eval:main',
            'hand_recon_train = hand_recon_train.train:main',
            'hand_recon_eval = hand_recon_train.evaluation.cli:main',
        ],
    },
    zip_safe=False,
)
