"""Teacher label parsing, flags, the versioned label file and the fixed split: no teacher environment needed
(the one test that runs MediaPipe skips without .venv-teacher)."""

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hand_recon_train.teacher import corpus as corpus_mod
from hand_recon_train.teacher.labels import (
    DEFAULT_SETTINGS,
    StaleLabelsError,
    build_labels,
    hand_from_raw,
    image_labels,
    label_report,
    load_labels,
    write_labels,
)
from hand_recon_train.teacher.runner import TeacherUnavailable, find_teacher_python, read_raw, run_worker

FIXTURE = Path(__file__).parent / 'fixtures' / 'teacher' / 'raw_sample.jsonl'
TRAIN_ROOT = Path(__file__).resolve().parents[1].parent / 'shared' / 'realimgs-train'


def _raw_hand(label='Left', x0=0.25, y0=0.5):
    lm = [[x0 + 0.01 * i, y0 - 0.01 * i, -0.001 * i] for i in range(21)]
    world = [[0.001 * i, 0.002 * i, 0.0] for i in range(21)]
    return {'landmarks': lm, 'world': world, 'label': label, 'score': 0.9}


def test_fixture_parses_torn_line_ignored_and_error_kept():
    raw = read_raw(FIXTURE)
    assert len(raw) == 3  # the torn last line is dropped
    assert 'error' in raw['handsdataset/train/broken.jpg']
    two = raw['handsdataset/train/16_pic00003.jpg']
    labs = image_labels(two, boxes=None)
    assert len(labs['hands']) == 2
    assert {h['side'] for h in labs['hands']} == {'left', 'right'}
    for h in labs['hands']:
        assert h['keypoints'].shape == (21, 2) and h['world'].shape == (21, 3)
        assert np.allclose(h['world'][0], 0)  # re-rooted at the wrist
        assert 0 <= h['keypoints'][:, 0].min() and h['keypoints'][:, 0].max() <= 640
        assert h['flags']['flip_err'] is not None and h['flags']['flip_err'] < 0.1
        assert h['flags']['flip_side_ok'] and not h['flags']['duplicate'] and h['flags']['trusted']


def test_mirrored_label_is_swapped_for_ordinary_photos_and_not_for_the_flipped_pass():
    h = hand_from_raw(_raw_hand('Left'), 100, 100)
    assert h['side'] == 'right'
    assert h['keypoints'][0].tolist() == pytest.approx([25.0, 50.0])
    f = hand_from_raw(_raw_hand('Left'), 100, 100, flipped=True)
    assert f['side'] == 'left'  # the flip already is the mirror
    assert f['keypoints'][0, 0] == pytest.approx(75.0)  # mapped back into the original image
    assert f['world'][1, 0] == pytest.approx(-0.001)  # x of world landmarks mirrored too


def test_padding_is_removed_from_pixel_coordinates():
    h = hand_from_raw(_raw_hand('Right', 0.5, 0.5), 100, 100, pad=50)
    assert h['keypoints'][0].tolist() == pytest.approx([50.0, 50.0])  # centre of 200 px padded -> centre of 100


def test_bad_raw_hand_is_a_clear_error():
    bad = _raw_hand()
    bad['landmarks'] = bad['landmarks'][:20]
    with pytest.raises(ValueError, match='21'):
        hand_from_raw(bad, 100, 100)
    bad = _raw_hand(label='Both')
    with pytest.raises(ValueError, match='handedness'):
        hand_from_raw(bad, 100, 100)


def test_flags_duplicate_flip_disagreement_and_box_match():
    rec = {
        'width': 100,
        'height': 100,
        'pad': 0,
        'hands': [_raw_hand('Left'), _raw_hand('Left', 0.251, 0.5)],  # two detections on one hand
        'flipped_hands': [_raw_hand('Right', 0.75 - 0.2, 0.5)],
    }  # found elsewhere when flipped
    labs = image_labels(rec, boxes=[[20, 20, 50, 55], [80, 80, 95, 95]])
    for h in labs['hands']:
        assert h['flags']['duplicate'] and h['flags']['overlap'] > 0.5
        assert not h['flags']['trusted']
    boxes = sorted(h['flags']['box'] for h in labs['hands'])
    assert boxes == [-1, 0]  # one-to-one: the duplicate matches no box
    assert labs['missed_boxes'] == [1]


def test_label_file_roundtrip_and_refusals(tmp_path):
    root = tmp_path / 'corpus'
    (root / 'handsdataset' / 'train').mkdir(parents=True)
    img = root / 'handsdataset' / 'train' / '16_pic00003.jpg'
    img.write_bytes(b'not really a jpeg, only hashed')
    raw = read_raw(FIXTURE)
    rec = copy.deepcopy(raw['handsdataset/train/16_pic00003.jpg'])
    rec['sha256'] = hashlib.sha256(img.read_bytes()).hexdigest()
    broken = root / 'handsdataset' / 'train' / 'broken.jpg'
    broken.write_bytes(b'')
    corpus = [
        corpus_mod.CorpusImage(img, 'handsdataset', '16', 'train', [[200, 100, 400, 400]]),
        corpus_mod.CorpusImage(broken, 'handsdataset', '', 'train', []),
    ]
    doc = build_labels(
        corpus, {str(img): rec, str(broken): raw['handsdataset/train/broken.jpg']}, DEFAULT_SETTINGS, root
    )
    assert len(doc['images']) == 1 and doc['skipped'][0]['path'].endswith('broken.jpg')
    path = tmp_path / 'labels.json'
    write_labels(doc, path)
    back = load_labels(path, root=root)
    assert back['images'][0]['hands'][0]['keypoints'].shape == (21, 2)
    rep = label_report(back)
    assert rep['rows']['handsdataset/train']['hands'] == 2 and rep['skipped'] == {'ValueError': 1}

    with pytest.raises(StaleLabelsError, match='settings'):
        load_labels(path, settings={**DEFAULT_SETTINGS, 'model_complexity': 0})
    img.write_bytes(b'changed')
    with pytest.raises(StaleLabelsError, match='changed since labelling'):
        load_labels(path, root=root)
    for key, value, msg in [
        ('format_version', 99, 'format version'),
        ('format', 'other', 'not a'),
        ('teacher', {'name': 'mediapipe_hands', 'version': '0.10.30'}, 'teacher'),
    ]:
        bad = json.loads(path.read_text())
        bad[key] = value
        other = tmp_path / f'bad_{key}.json'
        other.write_text(json.dumps(bad))
        with pytest.raises(StaleLabelsError, match=msg):
            load_labels(other)
    (tmp_path / 'garbage.json').write_text('{nope')
    with pytest.raises(StaleLabelsError, match='readable'):
        load_labels(tmp_path / 'garbage.json')


@pytest.mark.skipif(not TRAIN_ROOT.is_dir(), reason='../shared/realimgs-train is not here')
def test_split_is_by_recording_and_fixed():
    images = corpus_mod.list_corpus(TRAIN_ROOT)
    by_rec = {}
    for im in images:
        by_rec.setdefault((im.source, im.recording), set()).add(im.split)
    assert all(len(s) == 1 for s in by_rec.values()), 'a recording is in both splits'
    val = [im for im in images if im.split == 'val']
    assert 0.1 < len(val) / len(images) < 0.25
    two_hand_val = [im for im in val if len(im.boxes) >= 2]
    assert len(two_hand_val) >= 40  # the two-hand target needs two-hand frames
    assert corpus_mod.recording_of('handsdataset', '3_1528499009.07_pic00012.jpg') == '3_1528499009.07'
    assert corpus_mod.recording_of('handsdataset', 'pic00001.jpg') == ''
    assert corpus_mod.recording_of('roboflow_hands', '107IMG__jpg.rf.abc.jpg') == '107IMG__jpg'


def test_runner_says_how_to_get_the_teacher(monkeypatch, tmp_path):
    monkeypatch.setenv('HAND_RECON_TEACHER_PYTHON', str(tmp_path / 'missing' / 'python'))
    with pytest.raises(TeacherUnavailable, match='does not exist'):
        find_teacher_python()


def _teacher_or_skip():
    try:
        return find_teacher_python()
    except TeacherUnavailable as exc:
        pytest.skip(f'teacher environment absent ({exc})')


@pytest.mark.slow
@pytest.mark.skipif(not TRAIN_ROOT.is_dir(), reason='../shared/realimgs-train is not here')
def test_worker_labels_real_frames_and_resumes(tmp_path):
    python = _teacher_or_skip()
    images = [p for p in corpus_mod.list_corpus(TRAIN_ROOT, sources=['handsdataset']) if len(p.boxes) == 2][:2]
    bad = tmp_path / 'unreadable.jpg'
    bad.write_bytes(b'\xff\xd8 not an image')
    jobs = [{'path': str(im.path), 'pad': 0} for im in images] + [{'path': str(bad), 'pad': 0}]
    raw_path = tmp_path / 'raw.jsonl'
    raw = run_worker(jobs[:1], DEFAULT_SETTINGS, raw_path, python=python, log=lambda *_: None)
    assert len(raw) == 1
    shutil.copy(raw_path, tmp_path / 'first.jsonl')
    raw = run_worker(jobs, DEFAULT_SETTINGS, raw_path, python=python, log=lambda *_: None)
    assert len(raw) == 3
    assert (tmp_path / 'first.jsonl').read_text() in raw_path.read_text()  # resumed, not redone
    assert 'error' in raw[str(bad)]
    doc = build_labels(images, raw, DEFAULT_SETTINGS, TRAIN_ROOT)
    for im in doc['images']:
        assert len(im['hands']) == 2 and {h['side'] for h in im['hands']} == {'left', 'right'}
        assert all(h['flags']['box'] >= 0 for h in im['hands'])
