"""Stand-in hand: topology, MANO conventions, determinism against the shipped manifest, posing."""

import hashlib
import json
import os
import zlib

import numpy as np
import pytest
import torch

from hand_recon_ros import conventions
from hand_recon_ros.hand_model import mano_loader, mesh_utils
from hand_recon_ros.hand_model.model import load_hand_model
from tools.standin import generator as standin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN_DIR = os.path.join(REPO, 'models', 'standin')


@pytest.fixture(scope='module')
def right():
    return standin.build_standin_arrays('right')


@pytest.fixture(scope='module')
def shipped():
    return {s: mano_loader.load_model_file(os.path.join(STANDIN_DIR, f))[0] for s, f in standin.STANDIN_FILES.items()}


@pytest.fixture(scope='module')
def flat_model():
    return load_hand_model(flat_hand_mean=True)


def _forward(model, side, pose, orient=None, betas=None, transl=None):
    with torch.no_grad():
        return model(
            side,
            torch.zeros(1, 3) if orient is None else torch.as_tensor(orient)[None].float(),
            torch.as_tensor(pose, dtype=torch.float32)[None],
            torch.zeros(1, 10) if betas is None else torch.as_tensor(betas)[None].float(),
            None if transl is None else torch.as_tensor(transl)[None].float(),
        )


# ---------------------------------------------------------------------------------------------
# topology and conventions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('side', ['right', 'left'])
def test_topology_is_a_disk_with_one_16_vertex_wrist_loop(shipped, side):
    d = shipped[side]
    report = mesh_utils.mesh_report(d['v_template'], d['f'])
    assert (report['vertices'], report['faces']) == (778, 1538)
    assert report['boundary_edges'] == 16
    assert report['nonmanifold_edges'] == 0 and report['inconsistent_edges'] == 0
    assert report['euler'] == 1 and report['unused_vertices'] == 0 and report['degenerate_faces'] == 0
    loops = mesh_utils.boundary_loops(d['f'])
    assert [len(loop) for loop in loops] == [16]
    v, f = mesh_utils.cap_boundary(d['v_template'], d['f'])
    closed = mesh_utils.mesh_report(v, f)
    assert closed['boundary_edges'] == 0 and closed['euler'] == 2 and closed['inconsistent_edges'] == 0
    # outward normals: a hand has a volume of a few hundred cm^3
    assert 1.0e-4 < closed['signed_volume'] < 6.0e-4


def test_left_faces_are_reversed_right_faces(shipped):
    np.testing.assert_array_equal(shipped['left']['f'], shipped['right']['f'][:, [0, 2, 1]])
    np.testing.assert_allclose(
        shipped['left']['v_template'], shipped['right']['v_template'] * np.array([-1, 1, 1]), atol=0
    )


def test_kintree_weights_and_regressor(shipped):
    d = shipped['right']
    kt = d['kintree_table']
    assert kt.dtype == np.uint32 and kt[0, 0] == 4294967295
    assert tuple(kt[0, 1:]) == conventions.MANO_PARENTS[1:] and tuple(kt[1]) == tuple(range(16))
    np.testing.assert_allclose(d['weights'].sum(1), 1.0, atol=1e-5)
    assert d['weights'].min() >= 0
    R = d['J_regressor']
    assert R.min() >= 0
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-5)
    nnz = (R > 0).sum(1)
    assert nnz.min() >= 4 and nnz.max() <= 100  # sparse, local
    # the stored J is the regressed rest skeleton; the wrist sits ~9 cm out along +x (like MANO)
    np.testing.assert_allclose(R.astype(np.float64) @ d['v_template'], d['J'], atol=1e-6)
    assert 0.08 < d['J'][0, 0] < 0.11 and abs(d['J'][0, 1]) < 0.02 and abs(d['J'][0, 2]) < 0.02
    assert d['posedirs'].shape == (778, 3, 135) and not np.any(d['posedirs'])


def test_skeleton_dimensions_are_hand_like(shipped):
    J = shipped['right']['J'].astype(np.float64)
    v = shipped['right']['v_template'].astype(np.float64)
    palm = np.linalg.norm(J[4] - J[0])  # wrist -> middle MCP
    assert 0.075 < palm < 0.095
    hand_length = np.max(np.linalg.norm(v - J[0], axis=1))  # wrist -> middle fingertip
    assert 0.16 < hand_length < 0.20
    width = np.linalg.norm(J[1] - J[7])  # index MCP -> pinky MCP
    assert 0.045 < width < 0.070
    # fingers point -x from the wrist, index on the +z side of the pinky, thumb on +z
    for base, tip_child in ((1, 3), (4, 6), (7, 9), (10, 12)):
        assert J[tip_child, 0] < J[base, 0] < J[0, 0]
    assert J[1, 2] > J[4, 2] > J[10, 2] > J[7, 2]
    assert J[15, 2] > J[1, 2]


def test_tip_vertex_ids_sit_at_the_finger_ends(shipped):
    v = shipped['right']['v_template'].astype(np.float64)
    J = shipped['right']['J'].astype(np.float64)
    fingers = {'thumb': (13, 15), 'index': (1, 3), 'middle': (4, 6), 'ring': (10, 12), 'pinky': (7, 9)}
    for name, apex, ring in zip(standin.FINGER_ORDER, standin.TIP_APEX_IDS, standin.TIP_RING_IDS):
        base, distal = fingers[name]
        axis = (J[distal] - J[base]) / np.linalg.norm(J[distal] - J[base])
        rel = v - J[base]
        along = rel @ axis
        lateral = np.linalg.norm(rel - along[:, None] * axis, axis=1)
        along[lateral > 0.012] = -np.inf  # this finger's vertices only
        assert np.argmax(along) == apex, name  # the apex is the extreme vertex
        assert 0.001 < np.linalg.norm(v[ring] - v[apex]) < 0.006, name
    assert tuple(standin.TIP_APEX_IDS) == conventions.MANO_TIP_VERTICES_RIGHT
    assert np.linalg.norm(v[445] - v[444]) < 0.006  # left-hand middle tip convention


def test_left_shapedirs_heuristic_is_not_triggered(shipped):
    assert not mano_loader.left_shapedirs_need_fix(shipped['left'], shipped['right'])
    np.testing.assert_allclose(shipped['left']['shapedirs'][:, 0], -shipped['right']['shapedirs'][:, 0])


def test_pose_space_is_orthonormal_and_mean_is_a_relaxed_curl(shipped):
    d = shipped['right']
    C = d['hands_components'].astype(np.float64)
    np.testing.assert_allclose(C @ C.T, np.eye(45), atol=1e-5)
    var = (d['hands_coeffs'].astype(np.float64) ** 2).mean(0)
    assert np.all(np.diff(var[:10]) < 0)  # ordered by variance
    z = standin.flexion_axes()['index']
    mean = d['hands_mean'].reshape(15, 3)
    for jid in (1, 2, 3):
        assert 0.05 < mean[jid - 1] @ z < 0.5  # index joints slightly flexed


def test_shapedirs_change_size_and_proportions(shipped):
    d = shipped['right']
    v = d['v_template'].astype(np.float64)
    sd = d['shapedirs'].astype(np.float64)
    J = d['J'].astype(np.float64)
    tip = lambda vv: np.linalg.norm(vv[444] - J[0])  # noqa: E731  middle fingertip to wrist
    # beta0 (overall size, about the wrist) lengthens the hand by 5-15 mm per unit
    assert 0.005 < tip(v + sd[:, :, 0]) - tip(v) < 0.015
    # beta1 lengthens the four fingers but not the thumb; beta6 the thumb only
    assert np.linalg.norm(sd[444, :, 1]) > 0.003 and np.linalg.norm(sd[745, :, 1]) < 1e-6
    assert np.linalg.norm(sd[745, :, 6]) > 0.004 and np.linalg.norm(sd[444, :, 6]) < 1e-6
    # every direction does something, and no vertex moves more than 2 cm per unit
    norms = np.linalg.norm(sd, axis=1)
    assert np.all(norms.max(0) > 5e-4) and norms.max() < 0.02


# ---------------------------------------------------------------------------------------------
# determinism and the shipped files
# ---------------------------------------------------------------------------------------------
def test_shipped_files_match_manifest_and_regeneration(right, tmp_path):
    with open(os.path.join(STANDIN_DIR, 'manifest.json')) as fh:
        manifest = json.load(fh)
    assert manifest['generator'] == standin.GENERATOR_VERSION
    models = {'right': right, 'left': standin.mirror_model(right)}
    for name, info in manifest['files'].items():
        with open(os.path.join(STANDIN_DIR, name), 'rb') as fh:
            shipped_bytes = fh.read()
        assert hashlib.sha256(shipped_bytes).hexdigest() == info['sha256'], f'{name} differs from manifest'
        model = models[info['side']]
        with np.load(os.path.join(STANDIN_DIR, name), allow_pickle=False) as shipped_npz:
            shipped_arrays = {k: shipped_npz[k] for k in shipped_npz.files}
        assert sorted(shipped_arrays) == sorted(model), name
        for key, shipped_arr in shipped_arrays.items():
            regenerated = np.asarray(model[key])
            assert regenerated.dtype == shipped_arr.dtype and regenerated.shape == shipped_arr.shape, (name, key)
            if not np.issubdtype(shipped_arr.dtype, np.number):
                assert (regenerated == shipped_arr).all(), (name, key)
                continue
            regenerated, expected = regenerated.astype(np.float64), shipped_arr.astype(np.float64)
            if key == 'hands_components':
                # rows past the pose bank's rank span its null space: any orthonormal basis of it is right, and
                # LAPACK builds pick different ones. Compare those rows by the subspace they span.
                rank = int(np.linalg.matrix_rank(np.asarray(model['hands_coeffs'], np.float64), tol=1e-9))
                rest_r, rest_e = regenerated[rank:], expected[rank:]
                np.testing.assert_allclose(rest_r.T @ rest_r, rest_e.T @ rest_e, atol=1e-5, err_msg=name)
                regenerated, expected = regenerated[:rank], expected[:rank]
            # the generator is deterministic, but BLAS/numpy builds may round the last bits differently
            np.testing.assert_allclose(
                regenerated,
                expected,
                rtol=1e-5,
                atol=1e-9,
                err_msg=f'{name}:{key}: regenerated arrays differ; rerun the standin CLI',
            )
        if standin.content_sha256(model) == info['content_sha256'] and zlib.ZLIB_RUNTIME_VERSION == manifest['zlib']:
            assert hashlib.sha256(standin.npz_bytes(model)).hexdigest() == info['sha256']


def test_generation_is_deterministic_in_process(right):
    again = standin.build_standin_arrays('right')
    assert standin.content_sha256(again) == standin.content_sha256(right)


def test_cli_writes_manifest(tmp_path):
    assert standin.main(['--out', str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    for name, info in manifest['files'].items():
        data = (tmp_path / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info['sha256']
        with np.load(tmp_path / name, allow_pickle=False) as z:
            assert z['v_template'].shape == (778, 3) and z['v_template'].dtype == np.float32
    assert 'NOT MANO' in (tmp_path / 'README.md').read_text()


# ---------------------------------------------------------------------------------------------
# posing through smplx
# ---------------------------------------------------------------------------------------------
def _angle(a, b):
    return np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def test_flexing_the_index_curls_it_towards_the_palm(flat_model):
    k = standin.flexion_axes()['index']
    rest = _forward(flat_model, 'right', np.zeros(45))
    pose = np.zeros((15, 3))
    pose[0], pose[1], pose[2] = np.radians(40) * k, np.radians(60) * k, np.radians(30) * k
    posed = _forward(flat_model, 'right', pose.ravel())
    j_rest, j = rest['joints'][0].numpy(), posed['joints'][0].numpy()
    # 21-joint order: index = 5 (MCP), 6, 7, 8 (tip)
    assert _angle(j[6] - j[5], j_rest[6] - j_rest[5]) == pytest.approx(40, abs=0.5)
    assert _angle(j[7] - j[6], j[6] - j[5]) == pytest.approx(60, abs=0.5)
    assert _angle(j[8] - j[7], j[7] - j[6]) == pytest.approx(30, abs=3)  # tip is a vertex
    # the tip moves towards the palm side (-y, palm normal) by several cm, the MCP stays
    assert j[8, 1] - j_rest[8, 1] < -0.04
    np.testing.assert_allclose(j[5], j_rest[5], atol=1e-6)
    # other fingers do not move, and no vertex jumps absurdly far
    v0, v1 = rest['vertices'][0].numpy(), posed['vertices'][0].numpy()
    moved = np.linalg.norm(v1 - v0, axis=1)
    assert moved[conventions.MANO_TIP_VERTICES_RIGHT[2]] < 1e-6
    index_length = np.linalg.norm(j_rest[8] - j_rest[5])
    assert moved.max() <= 1.2 * index_length


# LBS squeezes the palmar skin of a ~90 degree finger joint (fist/pointing), so the bound is loose there
@pytest.mark.parametrize(
    'pose_name,min_ratio', [('fist', 0.02), ('pointing', 0.02), ('spread', 0.25), ('half_fist', 0.25)]
)
def test_posed_meshes_keep_edge_lengths_bounded(flat_model, pose_name, min_ratio):
    rest = _forward(flat_model, 'right', np.zeros(45))['vertices'][0].numpy()
    posed = _forward(flat_model, 'right', standin.named_pose(pose_name))['vertices'][0].numpy()
    faces = flat_model.faces('right')
    ratio = mesh_utils.edge_lengths(posed, faces) / mesh_utils.edge_lengths(rest, faces)
    assert min_ratio < ratio.min() and ratio.max() < 2.5
    assert np.linalg.norm(posed - rest, axis=1).max() < 0.15


def test_fist_brings_fingertips_to_the_palm(flat_model):
    rest = _forward(flat_model, 'right', np.zeros(45))['joints'][0].numpy()
    fist = _forward(flat_model, 'right', standin.named_pose('fist'))['joints'][0].numpy()
    for tip in (8, 12, 16, 20):
        assert np.linalg.norm(fist[tip] - fist[0]) < 0.75 * np.linalg.norm(rest[tip] - rest[0])
        assert fist[tip, 1] < rest[tip, 1] - 0.015  # curled to the palm side of the knuckles


def test_global_orient_rotates_about_the_offset_root(flat_model):
    rest = _forward(flat_model, 'right', np.zeros(45))
    turned = _forward(flat_model, 'right', np.zeros(45), orient=np.array([0.0, 0.0, np.pi / 2]))
    j0 = rest['joints16'][0, 0].numpy()
    np.testing.assert_allclose(turned['joints16'][0, 0].numpy(), j0, atol=1e-6)
    assert np.linalg.norm(j0) > 0.08
    R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    expected = (rest['vertices'][0].numpy() - j0) @ R.T + j0
    np.testing.assert_allclose(turned['vertices'][0].numpy(), expected, atol=1e-5)


def test_left_hand_mirrors_the_right():
    model = load_hand_model(flat_hand_mean=False)
    rng = np.random.default_rng(3)
    pose = rng.normal(0, 0.3, 45)
    orient = rng.normal(0, 0.8, 3)
    betas = rng.normal(0, 1.0, 10)
    transl = rng.normal(0, 0.1, 3)
    r = _forward(model, 'right', pose, orient, betas, transl)
    left = _forward(
        model, 'left', standin.mirror_pose(pose), standin.mirror_pose(orient), betas, transl * np.array([-1, 1, 1])
    )
    flip = np.array([-1.0, 1, 1], dtype=np.float32)
    np.testing.assert_allclose(left['vertices'][0].numpy(), r['vertices'][0].numpy() * flip, atol=1e-5)
    np.testing.assert_allclose(left['joints16'][0].numpy(), r['joints16'][0].numpy() * flip, atol=1e-5)
