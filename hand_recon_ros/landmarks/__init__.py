"""Hands from MediaPipe's networks as plain-PyTorch ports: the hand landmark network (2D/3D landmarks from a hand
crop) and the palm detector (palms on the whole frame)."""

from hand_recon_ros.landmarks.mediapipe_port import (
    HANDEDNESS_MEANING,
    INPUT_SIZE,
    PALM_INPUT_SIZE,
    MediaPipeGraphNet,
    MediaPipeLandmarkNet,
    MediaPipePalmNet,
    load_landmark_model,
    load_palm_model,
)

__all__ = [
    'HANDEDNESS_MEANING',
    'INPUT_SIZE',
    'PALM_INPUT_SIZE',
    'MediaPipeGraphNet',
    'MediaPipeLandmarkNet',
    'MediaPipePalmNet',
    'load_landmark_model',
    'load_palm_model',
]
