"""The keypoint teacher: MediaPipe Hands 0.10.21 run in its own environment over real photos, its answers
turned into versioned, flagged labels (``labels``), the training corpus and its fixed split (``corpus``)."""
