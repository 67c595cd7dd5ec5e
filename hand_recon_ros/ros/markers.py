"""RViz MarkerArray for the reconstructed hands: mesh (TRIANGLE_LIST), joints (SPHERE_LIST), bones (LINE_LIST).

RViz rules this follows (ros2-conventions-and-peers.md §5): TRIANGLE_LIST has no index buffer, so faces
are expanded; the point count stays constant per ns/id so rviz updates its buffer in place; one colour
per marker keeps lighting on; a NaN anywhere rejects the whole marker, so non-finite hands are skipped;
a vanished hand gets one DELETE (never an empty TRIANGLE_LIST, never a per-frame DELETEALL) and the
lifetime removes anything left over.
"""

from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from hand_recon_ros.conventions import BONES, SIDES
from hand_recon_ros.results import FrameResult, HandResult

__all__ = ['HandMarkerBuilder', 'build_marker_array', 'DEFAULT_SIDE_COLORS', 'SIDE_MARKER_ID']

# Marker id per side; the namespace already separates sides, distinct ids keep them apart if merged.
SIDE_MARKER_ID = {'left': 0, 'right': 1}
DEFAULT_SIDE_COLORS = {'left': (0.30, 0.60, 1.00, 0.85), 'right': (1.00, 0.55, 0.20, 0.85)}
_BONE_COLOR = (0.95, 0.95, 0.95, 1.0)
_BONE_INDEX = np.asarray(BONES, np.int64).ravel()  # parent, child, parent, child, ...

Key = Tuple[str, int]


def _copy_header(header: Header) -> Header:
    stamp = Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
    return Header(stamp=stamp, frame_id=str(header.frame_id))


def _duration(seconds: float) -> Duration:
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def _points(xyz: np.ndarray) -> List[Point]:
    """(N, 3) array -> list of Points. tolist() yields Python floats in one C call."""
    return [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def _check_faces(faces) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise ValueError(f'faces must be a non-empty (F, 3) array, got shape {faces.shape}')
    if faces.dtype.kind not in 'iu':
        raise ValueError(f'faces must be integer indices, got dtype {faces.dtype}')
    if faces.min() < 0:
        raise ValueError('faces contain negative vertex indices')
    return faces.astype(np.int64)


class HandMarkerBuilder:
    """Builds one MarkerArray per frame and remembers what it published, to DELETE vanished hands once.

    faces: an (F, 3) array used for both sides, or a mapping side -> (F, 3) (e.g. a left mesh with
    reversed winding). Sides without faces get joints and bones only.
    """

    def __init__(
        self,
        faces: Union[None, np.ndarray, Mapping[str, np.ndarray]] = None,
        *,
        lifetime_s: float = 0.3,
        ns_prefix: str = 'hand',
        mesh: bool = True,
        joints: bool = True,
        bones: bool = True,
        joint_radius_m: float = 0.008,
        bone_width_m: float = 0.004,
        colors: Optional[Mapping[str, Iterable[float]]] = None,
        frame_locked: bool = False,
    ):
        if not lifetime_s >= 0:
            raise ValueError(f'lifetime_s must be >= 0 (0 = forever), got {lifetime_s}')
        if not (joint_radius_m > 0 and bone_width_m > 0):
            raise ValueError('joint_radius_m and bone_width_m must be > 0')
        self._faces: Dict[str, np.ndarray] = {}
        self._face_index: Dict[str, List[int]] = {}
        if faces is not None:
            items = faces.items() if isinstance(faces, Mapping) else ((s, faces) for s in SIDES)
            for side, f in items:
                self.set_faces(side, f)
        self.lifetime_s = float(lifetime_s)
        self.ns_prefix = ns_prefix
        self.mesh, self.joints, self.bones = mesh, joints, bones
        self.joint_radius_m, self.bone_width_m = float(joint_radius_m), float(bone_width_m)
        self.frame_locked = frame_locked
        self.colors = dict(DEFAULT_SIDE_COLORS)
        for side, rgba in (colors or {}).items():
            rgba = tuple(float(c) for c in rgba)
            if side not in SIDES or len(rgba) != 4 or not all(0.0 <= c <= 1.0 for c in rgba):
                raise ValueError(f'colour for {side!r} must be 4 values in [0, 1] for left/right, got {rgba}')
            self.colors[side] = rgba
        self._live: Set[Key] = set()
        self.skipped_nonfinite = 0

    def set_faces(self, side: str, faces: np.ndarray) -> None:
        if side not in SIDES:
            raise ValueError(f'side must be one of {SIDES}, got {side!r}')
        faces = _check_faces(faces)
        self._faces[side] = faces
        self._face_index[side] = faces.ravel().tolist()

    def namespace(self, side: str, part: str) -> str:
        return f'{self.ns_prefix}_{side}/{part}'

    # ------------------------------------------------------------------------------------------------
    def build(self, frame: FrameResult, header: Header) -> MarkerArray:
        """Markers for every finite hand (best score per side) plus DELETEs for markers that vanished."""
        header = _copy_header(header)
        lifetime = _duration(self.lifetime_s)
        best: Dict[str, HandResult] = {}
        for hand in frame.hands:
            if hand.handedness in SIDE_MARKER_ID and (
                hand.handedness not in best or hand.score > best[hand.handedness].score
            ):
                best[hand.handedness] = hand

        markers: List[Marker] = []
        for side in SIDES:
            hand = best.get(side)
            if hand is not None:
                markers.extend(self._hand_markers(side, hand, header, lifetime))
        current = {(m.ns, m.id) for m in markers}
        for ns, marker_id in sorted(self._live - current):
            markers.append(Marker(header=header, ns=ns, id=marker_id, action=Marker.DELETE))
        self._live = current
        return MarkerArray(markers=markers)

    def delete_all(self, header: Optional[Header] = None) -> MarkerArray:
        """DELETEALL per namespace this builder uses (for deactivate/shutdown, not per frame)."""
        header = _copy_header(header) if header is not None else Header()
        markers = [
            Marker(header=header, ns=self.namespace(side, part), action=Marker.DELETEALL)
            for side in SIDES
            for part in ('mesh', 'joints', 'bones')
        ]
        self._live = set()
        return MarkerArray(markers=markers)

    # ------------------------------------------------------------------------------------------------
    def _base(
        self,
        side: str,
        part: str,
        marker_type: int,
        header: Header,
        lifetime: Duration,
        rgba: Tuple[float, float, float, float],
    ) -> Marker:
        m = Marker(
            header=header,
            ns=self.namespace(side, part),
            id=SIDE_MARKER_ID[side],
            type=marker_type,
            action=Marker.ADD,
            lifetime=lifetime,
            frame_locked=self.frame_locked,
        )
        m.pose.orientation.w = 1.0
        m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
        return m

    def _hand_markers(self, side: str, hand: HandResult, header: Header, lifetime: Duration) -> List[Marker]:
        joints = np.asarray(hand.joints_3d, np.float64)
        want_mesh = self.mesh and hand.vertices is not None and side in self._faces
        vertices = np.asarray(hand.vertices, np.float64) if want_mesh else None
        if joints.shape != (21, 3):
            raise ValueError(f'{side} hand joints_3d has shape {joints.shape}, expected (21, 3)')
        if not np.isfinite(joints).all() or (vertices is not None and not np.isfinite(vertices).all()):
            self.skipped_nonfinite += 1
            return []

        out = []
        rgba = self.colors[side]
        if vertices is not None:
            if vertices.ndim != 2 or vertices.shape[1] != 3:
                raise ValueError(f'{side} hand vertices have shape {vertices.shape}, expected (V, 3)')
            if self._faces[side].max() >= vertices.shape[0]:
                raise ValueError(
                    f'{side} faces index vertex {int(self._faces[side].max())} but the hand has '
                    f'{vertices.shape[0]} vertices'
                )
            mesh = self._base(side, 'mesh', Marker.TRIANGLE_LIST, header, lifetime, rgba)
            mesh.scale.x = mesh.scale.y = mesh.scale.z = 1.0
            # One Point per vertex, shared by every face that uses it: 778 constructions, not 4614.
            unique = _points(vertices)
            mesh.points = list(map(unique.__getitem__, self._face_index[side]))
            out.append(mesh)

        joint_points = _points(joints) if (self.joints or self.bones) else []
        if self.joints:
            m = self._base(side, 'joints', Marker.SPHERE_LIST, header, lifetime, rgba[:3] + (1.0,))
            m.scale.x = m.scale.y = m.scale.z = 2.0 * self.joint_radius_m
            m.points = joint_points
            out.append(m)
        if self.bones:
            m = self._base(side, 'bones', Marker.LINE_LIST, header, lifetime, _BONE_COLOR)
            m.scale.x = self.bone_width_m
            m.points = [joint_points[i] for i in _BONE_INDEX.tolist()]
            out.append(m)
        return out


def build_marker_array(
    frame: FrameResult,
    faces: Union[None, np.ndarray, Mapping[str, np.ndarray]],
    header: Header,
    lifetime_s: float = 0.3,
    published: Optional[Set[Key]] = None,
    **options,
) -> MarkerArray:
    """One-call form of HandMarkerBuilder.build for callers that keep no builder.

    ``published`` is the caller's set of (ns, id) markers currently shown; it is updated in place, so
    passing the same set every frame gives the one-time DELETEs for vanished hands. Without it no
    DELETEs are produced and only ``lifetime_s`` removes a vanished hand.
    """
    builder = HandMarkerBuilder(faces, lifetime_s=lifetime_s, **options)
    if published is not None:
        builder._live = set(published)
    array = builder.build(frame, header)
    if published is not None:
        published.clear()
        published.update(builder._live)
    return array
