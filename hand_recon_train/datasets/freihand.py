"""FreiHAND (one right hand per image) in two formats.

Official release (``format='official'``), split ``training`` or ``evaluation``:
``<split>_xyz.json`` (N x 21 x 3, metres, camera frame, already in our 21-joint order: wrist, thumb1..4,
index, middle, ring, pinky), ``<split>_K.json`` (N x 3 x 3), optional ``<split>_mano.json`` (N x [1 x 61]:
pose 48 axis-angle root first, shape 10, trans 3, camera frame) and ``<split>_verts.json`` (N x 778 x 3),
images ``<split>/rgb/%08d.jpg``. The training images come in 4 versions (green screen and 3 composited
backgrounds) of the same N = 32560 annotated frames: image ``i`` uses annotation ``i % N``.

mmpose test data (``format='mmpose'``): COCO-style JSON (``images``: id, file_name, width, height;
``annotations``: image_id, bbox xywh, keypoints 21 x (x, y, visibility)), 2D only, same joint order, images
next to the JSON. ``format='auto'`` picks by the files present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .common import FrameDataset, make_sample, project, read_image, read_json

__all__ = ['FREIHAND_TRAIN_FRAMES', 'FreiHandFrame', 'FreiHandAnnotations', 'FreiHandDataset']

FREIHAND_TRAIN_FRAMES = 32560  # annotated training frames; 4 image versions each
_SPLITS = ('training', 'evaluation')
_FORMATS = ('auto', 'official', 'mmpose')


@dataclass
class FreiHandFrame:
    """One image of a right hand; 3D fields are None when the format has none (mmpose)."""

    image_id: int
    annotation_index: int
    image_path: Path
    keypoints_2d: np.ndarray  # (21, 2) pixels
    keypoints_valid: np.ndarray  # (21,) bool
    bbox: np.ndarray | None  # (4,) x, y, w, h
    K: np.ndarray | None = None  # (3, 3)
    joints_cam: np.ndarray | None = None  # (21, 3) m
    mano: dict | None = None  # global_orient 3, hand_pose 45, betas 10, transl 3 (camera frame)
    vertices: np.ndarray | None = None  # (778, 3) m
    side: str = 'right'


def _check_list(value, n, name, path):
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise ValueError(
            f'{path}: expected a list of {n if n is not None else "N"} {name} entries, '
            f'got {type(value).__name__} of length {len(value) if hasattr(value, "__len__") else "?"}'
        )


class FreiHandAnnotations:
    """Frames of one FreiHAND split (official) or of a mmpose JSON file."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'training',
        format: str = 'auto',
        versions: tuple[int, ...] | None = None,
        json_file: str | None = None,
    ):
        root = Path(root)
        if format not in _FORMATS:
            raise ValueError(f'format must be one of {_FORMATS}, got {format!r}')
        if not root.is_dir():
            raise FileNotFoundError(f'FreiHAND folder not found: {root}')
        if format == 'auto':
            format = 'official' if (root / f'{split}_xyz.json').is_file() else 'mmpose'
        self.root, self.split, self.format = root, split, format
        self.frames: list[FreiHandFrame] = []
        if format == 'official':
            self._load_official(versions)
        else:
            self._load_mmpose(json_file)

    def _load_official(self, versions):
        if self.split not in _SPLITS:
            raise ValueError(f'split must be one of {_SPLITS}, got {self.split!r}')
        paths = {k: self.root / f'{self.split}_{k}.json' for k in ('xyz', 'K', 'mano', 'verts')}
        for k in ('xyz', 'K'):
            if not paths[k].is_file():
                raise FileNotFoundError(
                    f'FreiHAND {self.split}: {paths[k]} not found (official format needs '
                    f'{self.split}_xyz.json and {self.split}_K.json)'
                )
        xyz = read_json(paths['xyz'])
        _check_list(xyz, None, 'xyz', paths['xyz'])
        n = len(xyz)
        Ks = read_json(paths['K'])
        _check_list(Ks, n, 'K', paths['K'])
        mano = read_json(paths['mano']) if paths['mano'].is_file() else None
        verts = read_json(paths['verts']) if paths['verts'].is_file() else None
        if mano is not None:
            _check_list(mano, n, 'mano', paths['mano'])
        if verts is not None:
            _check_list(verts, n, 'verts', paths['verts'])
            verts = np.asarray(verts, np.float64)
        if versions is None:
            versions = (0, 1, 2, 3) if self.split == 'training' else (0,)
        if any(not isinstance(v, int) or v < 0 for v in versions):
            raise ValueError(f'versions must be non-negative ints, got {versions!r}')
        xyz_arr = np.asarray(xyz, np.float64)
        if xyz_arr.shape != (n, 21, 3):
            raise ValueError(f"{paths['xyz']}: expected (N, 21, 3), got {xyz_arr.shape}")
        K_arr = np.asarray(Ks, np.float64)
        if K_arr.shape != (n, 3, 3):
            raise ValueError(f"{paths['K']}: expected (N, 3, 3), got {K_arr.shape}")
        uv = project(xyz_arr, K_arr[:, None])
        for version in versions:
            for a in range(n):
                image_id = version * n + a
                params = None
                if mano is not None:
                    theta = np.asarray(mano[a], np.float64).reshape(-1)
                    if theta.shape != (61,):
                        raise ValueError(f"{paths['mano']}: entry {a} has {theta.size} values, expected 61")
                    params = {
                        'global_orient': theta[:3],
                        'hand_pose': theta[3:48],
                        'betas': theta[48:58],
                        'transl': theta[58:61],
                    }
                self.frames.append(
                    FreiHandFrame(
                        image_id=image_id,
                        annotation_index=a,
                        image_path=self.root / self.split / 'rgb' / f'{image_id:08d}.jpg',
                        keypoints_2d=uv[a],
                        keypoints_valid=np.isfinite(uv[a]).all(-1),
                        bbox=None,
                        K=K_arr[a],
                        joints_cam=xyz_arr[a],
                        mano=params,
                        vertices=None if verts is None else verts[a],
                    )
                )

    def _load_mmpose(self, json_file):
        path = self.root / json_file if json_file else None
        if path is None:
            found = sorted(self.root.glob('*freihand*.json'))
            if len(found) != 1:
                raise FileNotFoundError(
                    f'FreiHAND mmpose format: expected one *freihand*.json in {self.root}, '
                    f'found {[p.name for p in found]}; pass json_file='
                )
            path = found[0]
        data = read_json(path)
        if not isinstance(data, dict) or 'images' not in data or 'annotations' not in data:
            raise ValueError(f"{path}: expected a COCO-style object with 'images' and 'annotations'")
        images = {int(im['id']): im for im in data['images']}
        for ann in data['annotations']:
            image = images.get(int(ann['image_id']))
            if image is None:
                raise ValueError(f"{path}: annotation {ann.get('id')} names unknown image {ann['image_id']}")
            kp = np.asarray(ann['keypoints'], np.float64)
            if kp.size != 63:
                raise ValueError(f"{path}: annotation {ann.get('id')} has {kp.size} keypoint values, expected 63")
            kp = kp.reshape(21, 3)
            image_id = int(image['id'])
            self.frames.append(
                FreiHandFrame(
                    image_id=image_id,
                    annotation_index=image_id % FREIHAND_TRAIN_FRAMES,
                    image_path=self.root / image['file_name'],
                    keypoints_2d=kp[:, :2],
                    keypoints_valid=kp[:, 2] > 0,
                    bbox=np.asarray(ann['bbox'], np.float64) if 'bbox' in ann else None,
                )
            )

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> FreiHandFrame:
        return self.frames[index]

    def __iter__(self):
        return iter(self.frames)


class FreiHandDataset(FrameDataset, Dataset):
    """FreiHAND frames as trainer samples (:func:`common.make_sample`); the hand is the right one, the left
    slot is empty. mmpose-format frames are 2D-only (``joints_valid`` all False, ``K`` zero)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'training',
        input_size: int = 256,
        normalization: str = 'imagenet',
        **annotation_options,
    ):
        super().__init__(FreiHandAnnotations(root, split, **annotation_options), input_size, normalization)

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        f = self.annotations[int(index)]
        image = read_image(f.image_path)
        joints = None
        joints_valid = np.zeros((2, 21), bool)
        if f.joints_cam is not None:
            joints = np.zeros((2, 21, 3))
            joints[1] = f.joints_cam
            joints_valid[1] = True
        kp, kp_valid = np.zeros((2, 21, 2)), np.zeros((2, 21), bool)
        kp[1], kp_valid[1] = f.keypoints_2d, f.keypoints_valid
        mano = None
        if f.mano is not None:
            mano = {k: np.zeros((2, len(v))) for k, v in f.mano.items()}
            for k, v in f.mano.items():
                mano[k][1] = v
            mano['has_mano'] = np.array([False, True])
        return make_sample(
            image,
            f.K,
            joints,
            joints_valid,
            np.array([False, True]),
            self.input_size,
            self.normalization,
            mano,
            index,
            keypoints_2d=kp,
            keypoints_valid=kp_valid,
        )
