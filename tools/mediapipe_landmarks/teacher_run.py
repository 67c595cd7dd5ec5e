"""Run the original .tflite with the official LiteRT interpreter: the reference side of the parity check.

Runs in the teacher env (``.venv-teacher``: mediapipe 0.10.21, numpy 1.x, ai-edge-litert), never in the project
venv, and imports nothing from this repository. ``parity.py`` calls it through a subprocess::

    .venv-teacher/bin/python tools/mediapipe_landmarks/teacher_run.py --model M.tflite --inputs in.npz --out out.npz

``in.npz`` holds ``images`` (N, H, W, 3) float32 at the model's input size, in the range the graph takes (the
landmark graph [0, 1], the palm graph [-1, 1]); ``out.npz`` gets one (N, ...) array per graph output, keyed by the
output tensor's name (``Identity``, ``Identity_1``, ...). With ``--photos`` it also runs the complete
``mediapipe.solutions.hands`` pipeline on those full photos (and on their mirror images) and stores the handedness
label it reports, which is how the meaning of the raw handedness output is checked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def run_interpreter(model: str, images: np.ndarray, threads: int) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    results: dict[str, list[np.ndarray]] = {d['name']: [] for d in outputs}
    for image in images:
        interpreter.set_tensor(source['index'], image[None].astype(np.float32))
        interpreter.invoke()
        for detail in outputs:
            results[detail['name']].append(interpreter.get_tensor(detail['index'])[0].copy())
    return {name: np.stack(values) for name, values in results.items()}


def run_solution(photos: Sequence[str]) -> dict[str, np.ndarray]:
    """MediaPipe's own pipeline on full photos: P(label 'Right') it reports, for each photo and its mirror."""
    import cv2
    import mediapipe as mp

    right = np.full((len(photos), 2), np.nan, dtype=np.float32)
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1, model_complexity=1) as hands:
        for i, photo in enumerate(photos):
            bgr = cv2.imread(photo)
            if bgr is None:
                raise FileNotFoundError(photo)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for j, image in enumerate((rgb, np.ascontiguousarray(rgb[:, ::-1]))):
                found = hands.process(image)
                if found.multi_handedness:
                    top = found.multi_handedness[0].classification[0]
                    right[i, j] = top.score if top.label == 'Right' else 1.0 - top.score
    return {'solution_p_right': right}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='run a MediaPipe .tflite with LiteRT on an .npz of images')
    parser.add_argument('--model', required=True)
    parser.add_argument('--inputs', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--photos', nargs='*', default=[])
    args = parser.parse_args(argv)
    with np.load(args.inputs) as data:
        images = data['images']
    results: dict[str, Any] = run_interpreter(args.model, images, args.threads)
    if args.photos:
        results.update(run_solution(args.photos))
    np.savez(args.out, **results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
