"""Evaluation of trained networks (never imports rclpy).

- ``loop.py``: the shared loop (network over synthetic batches, hands at the ground-truth centres, detection);
- ``epoch_metrics.py``: the trainer's per-epoch metrics (``evaluate``, ``METRIC_KEYS``);
- ``report.py``: the full report of a synthetic split (per protocol and subset, two-hand metrics; JSON, Markdown,
  PNG);
- ``interhand.py``: the whole pipeline on real InterHand2.6M frames against their 3D ground truth;
- ``real_images.py``: methods side by side on real photos (label sets, matching; ``benchmarks/bench_real.py``);
- ``cli.py``: ``python -m hand_recon_train.evaluation`` (installed as ``hand_recon_eval``).
"""
