"""Two-hand 3D reconstruction (ACR + IHMR refinement) for ROS 2.

This top-level module must stay import-light: consumers import the generated message types as
``hand_recon_ros.msg`` and must not pay for torch. Heavy modules are imported explicitly.
"""

import pkgutil

# The generated message module (hand_recon_ros.msg) is installed by the interface build into the
# environment's site-packages, next to (or apart from) these sources. Merge both locations so
# ``import hand_recon_ros.msg`` works from a source checkout as well as from an install.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
