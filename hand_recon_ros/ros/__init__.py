# First import of every hand_recon_ros.ros module: sets OpenCV's pixel limit before cv2 is loaded.
from hand_recon_ros.ros import image_limits  # noqa: F401
