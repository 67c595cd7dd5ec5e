"""MediaPipe Hands runner for the keypoint teacher. Runs inside the teacher environment (.venv-teacher).

Standalone on purpose: it imports only mediapipe, numpy, cv2 and the standard library, because MediaPipe 0.10.21
needs numpy < 2 and cannot share the project environment. It writes MediaPipe's raw answers, one JSON line per image;
everything that interprets them (handedness of ordinary photos, pixels, quality flags) lives in
``hand_recon_train.teacher.labels``, which the tests exercise without this environment.

Input: a JSON file ``{"settings": {...}, "images": [{"path": ..., "pad": 0}, ...]}``. Output: JSON lines
``{"path", "sha256", "width", "height", "pad", "hands": [...], "flipped_hands": [...]}`` or ``{"path", "error"}``.
Each hand: ``landmarks`` (21 x [x, y, z], normalised to the padded image), ``world`` (21 x [x, y, z], metres),
``label`` ('Left' / 'Right' as MediaPipe says it, i.e. for a mirrored selfie) and ``score``.
"""

import argparse
import hashlib
import json
import sys
import time

import cv2
import numpy as np


def _hands(result):
    out = []
    if not result.multi_hand_landmarks:
        return out
    worlds = result.multi_hand_world_landmarks or [None] * len(result.multi_hand_landmarks)
    for lms, world, handed in zip(result.multi_hand_landmarks, worlds, result.multi_handedness):
        cls = handed.classification[0]
        out.append(
            {
                'landmarks': [[round(p.x, 6), round(p.y, 6), round(p.z, 6)] for p in lms.landmark],
                'world': None
                if world is None
                else [[round(p.x, 6), round(p.y, 6), round(p.z, 6)] for p in world.landmark],
                'label': cls.label,
                'score': round(float(cls.score), 6),
            }
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('jobs', help='JSON job file')
    parser.add_argument('--out', required=True, help='JSON lines output (appended)')
    args = parser.parse_args(argv)
    import mediapipe as mp  # noqa: PLC0415  (late: --help works without it)

    with open(args.jobs, encoding='utf-8') as f:
        jobs = json.load(f)
    s = jobs['settings']
    hands = mp.solutions.hands.Hands(
        static_image_mode=True,
        max_num_hands=int(s['max_num_hands']),
        model_complexity=int(s['model_complexity']),
        min_detection_confidence=float(s['min_detection_confidence']),
    )
    t0, n = time.perf_counter(), 0
    with open(args.out, 'a', encoding='utf-8') as out:
        for job in jobs['images']:
            path, pad = job['path'], int(job.get('pad', 0))
            record = {'path': path}
            try:
                data = open(path, 'rb').read()
                record['sha256'] = hashlib.sha256(data).hexdigest()
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError('cannot decode image')
                record.update(height=int(image.shape[0]), width=int(image.shape[1]), pad=pad)
                if pad > 0:
                    # tight crops: the palm detector wants context around the hand
                    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                rgb = np.ascontiguousarray(image[:, :, ::-1])
                record['hands'] = _hands(hands.process(rgb))
                if s.get('flip_check', True):
                    record['flipped_hands'] = _hands(hands.process(np.ascontiguousarray(rgb[:, ::-1])))
            except Exception as exc:  # noqa: BLE001  (one bad image is recorded and skipped, never fatal)
                record = {'path': path, 'error': f'{type(exc).__name__}: {exc}'}
            out.write(json.dumps(record) + '\n')
            n += 1
    hands.close()
    print(json.dumps({'images': n, 'seconds': round(time.perf_counter() - t0, 2)}), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
