"""Geometry helpers without ROS: rotations (torch), camera models, Procrustes alignment.

Submodules are imported explicitly (``from hand_recon_ros.geometry import camera``) so that numpy-only
users do not pay for importing torch.
"""
