"""The procedural stand-in hand's generator (models/standin/ holds its output) and a pose sheet to look at it.

The runtime reads only the generated .npz files (hand_recon_ros/hand_model/mano_loader.py); regenerate them with
``python -m tools.standin --out models/standin`` from the repository root.
"""
