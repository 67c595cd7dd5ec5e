"""2D/3D hand landmarks from a hand crop: a plain-PyTorch port of MediaPipe's hand landmark network."""

from hand_recon_ros.landmarks.mediapipe_port import (
    HANDEDNESS_MEANING,
    INPUT_SIZE,
    MediaPipeLandmarkNet,
    load_landmark_model,
)

__all__ = ['HANDEDNESS_MEANING', 'INPUT_SIZE', 'MediaPipeLandmarkNet', 'load_landmark_model']
