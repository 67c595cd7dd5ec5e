"""Offline tools for the MediaPipe hand landmark port: .tflite -> safetensors + graph JSON, and the parity check.

Run from the repository root with the project venv, e.g. ``.venv/bin/python -m tools.mediapipe_landmarks.convert``.
"""
