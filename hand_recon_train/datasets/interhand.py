"""InterHand2.6M in its official release format (and the mmpose test-data naming of the same files).

Files per split (``train``, ``val``, ``test``), searched in ``root``, ``root/annotations/<split>``,
``root/annotations`` and ``root/<split>``:

* ``InterHand2.6M_<split>_data.json`` (mmpose: ``<split>_interhand2.6m_data.json``): COCO-style ``images``
  (file_name, width, height, capture, camera, frame_idx) and ``annotations`` (image_id, bbox xywh,
  joint_valid 42x1, hand_type 'right' / 'left' / 'interacting', hand_type_valid);
* ``..._camera.json``: capture -> {campos, camrot, focal, princpt} -> camera -> values (mm, pixels);
* ``..._joint_3d.json``: capture -> frame -> {world_coord 42x3 mm, joint_valid 42, hand_type, hand_type_valid};
* optional ``..._MANO_NeuralAnnot.json``: capture -> frame -> {right, left} -> {pose 48, shape 10, trans 3}
  or null; the parameters live in the WORLD frame (metres), see :func:`mano_world_to_camera`.

Images: ``root/images/<split>/<file_name>`` (official) or ``root/<file_name>`` (mmpose).

Dataset joint order: 0-20 right hand, 21-41 left hand, each thumb tip..base, index, middle, ring, pinky,
wrist last; re-ordered here with ``conventions.interhand_to_21`` and returned ``[left, right]`` in metres.
A joint is valid when both files say so; as in the official loader, a hand whose wrist is invalid has
all its joints marked invalid (every root-relative quantity needs the wrist).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from hand_recon_ros.conventions import INTERHAND_TO_21, ROOT_WRIST, SIDES, interhand_to_21

from .common import (
    FrameDataset,
    interaction_distance,
    intrinsics_matrix,
    make_sample,
    project,
    read_image,
    read_json,
    world_to_camera,
)

__all__ = [
    'HAND_TYPES',
    'SUBSETS',
    'InterHandFrame',
    'InterHandAnnotations',
    'InterHandDataset',
    'find_interhand_files',
    'mano_world_to_camera',
]

HAND_TYPES = ('right', 'left', 'interacting')
# 'SH' single hand, 'IH' interacting (the dataset's hand_type), 'IH-close' interacting AND closely interacting
# by :func:`common.is_close_interaction` with the loader's threshold / reduction.
SUBSETS = ('all', 'SH', 'IH', 'IH-close')
_MM = 1e-3
# slices of the 42 dataset joints per side, in our [left, right] order
_SIDE_SLICE = {'left': slice(21, 42), 'right': slice(0, 21)}


def _file_names(split: str, kind: str) -> tuple[str, ...]:
    return (f'InterHand2.6M_{split}_{kind}.json', f'{split}_interhand2.6m_{kind}.json')


def find_interhand_files(root: str | os.PathLike, split: str = 'test') -> dict[str, Path | None]:
    """Paths of the data / camera / joint_3d (required) and MANO_NeuralAnnot (optional) files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'InterHand2.6M folder not found: {root}')
    folders = [root, root / 'annotations' / split, root / 'annotations', root / split]
    found = {}
    for kind in ('data', 'camera', 'joint_3d', 'MANO_NeuralAnnot'):
        found[kind] = next((d / n for d in folders for n in _file_names(split, kind) if (d / n).is_file()), None)
    missing = [k for k in ('data', 'camera', 'joint_3d') if found[k] is None]
    if missing:
        raise FileNotFoundError(
            f'InterHand2.6M {split!r} annotations missing in {root}: {missing}; expected e.g. '
            f'{_file_names(split, missing[0])[0]} or {_file_names(split, missing[0])[1]} in '
            f'{", ".join(str(d) for d in folders)}'
        )
    return found


def mano_world_to_camera(global_orient, transl, rotation, campos_m, root_joint_rest):
    """World-frame MANO (axis-angle root ``global_orient``, ``transl`` m) -> the same hand in the camera.

    MANO rotates about its rest-pose root joint ``J0`` (depends on the shape): ``X = Rg (x - J0) + J0 + t``.
    With ``X_cam = R (X - c)`` the camera-frame parameters are ``R Rg`` and ``R (J0 + t - c) - J0``.
    ``root_joint_rest`` is ``J0`` (3,) in metres from the hand model with these betas.
    """
    R = np.asarray(rotation, np.float64).reshape(3, 3)
    orient = Rotation.from_matrix(R @ Rotation.from_rotvec(np.asarray(global_orient, np.float64)).as_matrix())
    j0 = np.asarray(root_joint_rest, np.float64).reshape(3)
    t_cam = R @ (j0 + np.asarray(transl, np.float64).reshape(3) - np.asarray(campos_m, np.float64).reshape(3)) - j0
    return orient.as_rotvec(), t_cam


@dataclass
class InterHandFrame:
    """One annotated image; per-hand arrays are ``[left, right]``, metres, our 21-joint order."""

    image_id: int
    image_path: Path
    width: int
    height: int
    capture: str
    camera: str
    frame: str
    hand_type: str
    hand_type_valid: bool
    bbox: np.ndarray  # (4,) x, y, w, h pixels
    K: np.ndarray  # (3, 3)
    rotation: np.ndarray  # (3, 3) world -> camera
    campos: np.ndarray  # (3,) camera centre, world, m
    joints_world: np.ndarray  # (2, 21, 3) m
    joints_cam: np.ndarray  # (2, 21, 3) m
    keypoints_2d: np.ndarray  # (2, 21, 2) pixels of this image
    joints_valid: np.ndarray  # (2, 21) bool
    hand_valid: np.ndarray  # (2,) bool
    mano_world: dict | None = field(default=None)  # global_orient (2,3), hand_pose (2,45), betas (2,10),
    #                                                 transl (2,3), has_mano (2,) in the world frame

    @property
    def subset(self) -> str:
        return 'IH' if self.hand_type == 'interacting' else 'SH'

    def interaction_distance(self, reduce: str = 'mean_nearest') -> float:
        return interaction_distance(
            self.joints_cam[0], self.joints_cam[1], self.joints_valid[0], self.joints_valid[1], reduce
        )

    def is_close(self, threshold_m: float = 0.04, reduce: str = 'mean_nearest') -> bool:
        d = self.interaction_distance(reduce)
        return bool(self.hand_valid.all() and np.isfinite(d) and d < threshold_m)

    def mano_camera(self) -> dict | None:
        """MANO orientation in the camera frame (exact without a hand model); ``transl`` needs the rest root
        joint, see :func:`mano_world_to_camera`. None without the NeuralAnnot file."""
        if self.mano_world is None:
            return None
        out = {k: np.array(v, copy=True) for k, v in self.mano_world.items() if k != 'transl'}
        for s in range(2):
            if out['has_mano'][s]:
                out['global_orient'][s] = Rotation.from_matrix(
                    self.rotation @ Rotation.from_rotvec(out['global_orient'][s]).as_matrix()
                ).as_rotvec()
        return out


def _sides_of(hand_type: str) -> tuple[str, ...]:
    return SIDES if hand_type == 'interacting' else (hand_type,)


class InterHandAnnotations:
    """The annotation files of one split, joined per image; frames are built on access (the official train
    split has over a million)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'test',
        image_dir: str | os.PathLike | None = None,
        subset: str = 'all',
        close_threshold_m: float = 0.04,
        close_reduce: str = 'mean_nearest',
        min_valid_joints: int = 1,
        require_hand_type_valid: bool = False,
    ):
        if subset not in SUBSETS:
            raise ValueError(f'subset must be one of {SUBSETS}, got {subset!r}')
        if not isinstance(min_valid_joints, int) or not 1 <= min_valid_joints <= 21:
            raise ValueError(f'min_valid_joints must be an int in 1..21, got {min_valid_joints!r}')
        self.root, self.split = Path(root), split
        self.files = find_interhand_files(root, split)
        self.close_threshold_m, self.close_reduce = float(close_threshold_m), close_reduce
        self.min_valid_joints = min_valid_joints
        data = read_json(self.files['data'])
        if not isinstance(data, dict) or 'images' not in data or 'annotations' not in data:
            raise ValueError(f"{self.files['data']}: expected a COCO-style object with 'images' and 'annotations'")
        self.cameras = read_json(self.files['camera'])
        self.joints = read_json(self.files['joint_3d'])
        self.mano = read_json(self.files['MANO_NeuralAnnot']) if self.files['MANO_NeuralAnnot'] else None
        images = {int(im['id']): im for im in data['images']}
        self._entries = []
        for ann in data['annotations']:
            image = images.get(int(ann['image_id']))
            if image is None:
                raise ValueError(
                    f"{self.files['data']}: annotation {ann.get('id')} names image {ann['image_id']} "
                    'which is not in images'
                )
            hand_type = ann.get('hand_type')
            if hand_type not in HAND_TYPES:
                raise ValueError(
                    f"annotation {ann.get('id')}: hand_type must be one of {HAND_TYPES}, " f'got {hand_type!r}'
                )
            if require_hand_type_valid and not ann.get('hand_type_valid', 1):
                continue
            if (
                subset == 'SH'
                and hand_type == 'interacting'
                or subset in ('IH', 'IH-close')
                and hand_type != 'interacting'
            ):
                continue
            self._entries.append((image, ann))
        self.image_dir = Path(image_dir) if image_dir is not None else self._guess_image_dir()
        if subset == 'IH-close':
            self._entries = [
                e
                for i, e in enumerate(self._entries)
                if self.frame(i).is_close(self.close_threshold_m, self.close_reduce)
            ]

    def _guess_image_dir(self) -> Path:
        candidates = [self.root / 'images' / self.split, self.root / self.split, self.root]
        if self._entries:
            name = self._entries[0][0]['file_name']
            for folder in candidates:
                if (folder / name).is_file():
                    return folder
        return next((c for c in candidates if c.is_dir()), self.root)

    def __len__(self) -> int:
        return len(self._entries)

    def frame(self, index: int) -> InterHandFrame:
        image, ann = self._entries[index]
        capture, camera, frame_id = str(image['capture']), str(image['camera']), str(image['frame_idx'])
        try:
            cam = self.cameras[capture]
            R = np.asarray(cam['camrot'][camera], np.float64).reshape(3, 3)
            campos = np.asarray(cam['campos'][camera], np.float64).reshape(3) * _MM
            K = intrinsics_matrix(cam['focal'][camera], cam['princpt'][camera])
        except KeyError as exc:
            raise ValueError(
                f'{self.files["camera"]}: no parameters for capture {capture} camera {camera} ' f'({exc} missing)'
            ) from exc
        try:
            j3d = self.joints[capture][frame_id]
        except KeyError as exc:
            raise ValueError(f'{self.files["joint_3d"]}: no joints for capture {capture} frame {frame_id}') from exc
        world42 = np.asarray(j3d['world_coord'], np.float64).reshape(42, 3) * _MM
        valid42 = np.asarray(j3d.get('joint_valid', np.ones(42)), np.float64).reshape(42) > 0
        if 'joint_valid' in ann:
            valid42 &= np.asarray(ann['joint_valid'], np.float64).reshape(42) > 0
        valid42 &= np.isfinite(world42).all(-1)
        hand_type = ann['hand_type']
        hand_type_valid = bool(ann.get('hand_type_valid', 1))
        joints_world = np.stack([interhand_to_21(world42[_SIDE_SLICE[s]]) for s in SIDES])
        joints_valid = np.stack([valid42[_SIDE_SLICE[s]][list(INTERHAND_TO_21)] for s in SIDES])
        joints_valid &= joints_valid[:, ROOT_WRIST : ROOT_WRIST + 1]
        listed = _sides_of(hand_type) if hand_type_valid else SIDES
        hand_valid = np.array([s in listed for s in SIDES]) & (joints_valid.sum(-1) >= self.min_valid_joints)
        joints_cam = world_to_camera(joints_world, R, campos)
        mano = None
        if self.mano is not None:
            mano = _parse_mano(self.mano.get(capture, {}).get(frame_id))
        return InterHandFrame(
            image_id=int(image['id']),
            image_path=self.image_dir / image['file_name'],
            width=int(image['width']),
            height=int(image['height']),
            capture=capture,
            camera=camera,
            frame=frame_id,
            hand_type=hand_type,
            hand_type_valid=hand_type_valid,
            bbox=np.asarray(ann.get('bbox', [0, 0, 0, 0]), np.float64),
            K=K,
            rotation=R,
            campos=campos,
            joints_world=joints_world,
            joints_cam=joints_cam,
            keypoints_2d=project(joints_cam, K),
            joints_valid=joints_valid,
            hand_valid=hand_valid,
            mano_world=mano,
        )

    def __iter__(self):
        return (self.frame(i) for i in range(len(self)))


def _parse_mano(entry) -> dict:
    """NeuralAnnot entry ({right, left} -> {pose, shape, trans} or null) -> [left, right] arrays + has_mano."""
    out = {
        'global_orient': np.zeros((2, 3)),
        'hand_pose': np.zeros((2, 45)),
        'betas': np.zeros((2, 10)),
        'transl': np.zeros((2, 3)),
        'has_mano': np.zeros(2, bool),
    }
    for s, side in enumerate(SIDES):
        params = (entry or {}).get(side)
        if not params:
            continue
        pose = np.asarray(params['pose'], np.float64).reshape(-1)
        shape = np.asarray(params['shape'], np.float64).reshape(-1)
        trans = np.asarray(params['trans'], np.float64).reshape(-1)
        if pose.shape != (48,) or shape.shape != (10,) or trans.shape != (3,):
            raise ValueError(
                f'MANO {side}: expected pose 48, shape 10, trans 3, got {pose.shape}, {shape.shape}, ' f'{trans.shape}'
            )
        out['global_orient'][s], out['hand_pose'][s] = pose[:3], pose[3:]
        out['betas'][s], out['transl'][s], out['has_mano'][s] = shape, trans, True
    return out


class InterHandDataset(FrameDataset, Dataset):
    """InterHand2.6M frames as trainer samples (:func:`common.make_sample`): the whole frame letterboxed to
    ``input_size`` like at inference, both hands in the camera frame. MANO root orientation, pose and shape
    (camera frame) with ``has_mano`` when the NeuralAnnot file exists."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = 'test',
        input_size: int = 256,
        normalization: str = 'imagenet',
        **annotation_options,
    ):
        super().__init__(InterHandAnnotations(root, split, **annotation_options), input_size, normalization)

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        frame = self.annotations.frame(int(index))
        image = read_image(frame.image_path)
        if image.shape[:2] != (frame.height, frame.width):
            raise ValueError(
                f'{frame.image_path} is {image.shape[1]}x{image.shape[0]}, the annotation says '
                f'{frame.width}x{frame.height}'
            )
        return make_sample(
            image,
            frame.K,
            frame.joints_cam,
            frame.joints_valid,
            frame.hand_valid,
            self.input_size,
            self.normalization,
            frame.mano_camera(),
            index,
        )
