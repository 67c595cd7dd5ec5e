"""The real training photos (``../shared/realimgs-train/``): which images, their own boxes, and the fixed split.

Three sources (licences and attribution in that folder's README and in the shipped model's card):
``handsdataset`` (Apache-2.0, 640x480 webcam frames, boxes per hand), ``roboflow_hands`` (CC BY 4.0, 320x320,
oriented boxes), ``signdigits`` (Apache-2.0, 100x100 crops of one hand, no boxes).

The validation split is fixed once, by recording, never by frame: subjects repeat within a recording, so a frame
split would flatter the model. ``handsdataset``: the recordings in ``HANDSDATASET_VAL_RECORDINGS`` (chosen to hold
two-hand frames and several subjects); ``roboflow_hands``: its own ``valid/`` folder minus source photos that also
appear in ``train/`` (those go to train); ``signdigits`` (no subject ids): blocks of 50 consecutive camera file
numbers, one block in five, by a hash of the block.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    'CorpusImage',
    'SOURCES',
    'HANDSDATASET_VAL_RECORDINGS',
    'default_root',
    'list_corpus',
    'recording_of',
    'split_of',
]

SOURCES = ('handsdataset', 'roboflow_hands', 'signdigits')
# handsdataset recordings (file-name prefix before "_pic"; "" = files named pic*.jpg) held out for validation
HANDSDATASET_VAL_RECORDINGS = ('5', '35', '46', '996')
SIGNDIGITS_PAD = 50  # 100x100 crops padded to 200x200 before labelling (the palm detector wants context)


@dataclass
class CorpusImage:
    path: Path
    source: str
    recording: str
    split: str  # 'train' | 'val'
    boxes: list = field(default_factory=list)  # [x0, y0, x1, y1] pixels of the stored image
    pad: int = 0
    has_boxes: bool = True  # False: the source labels no boxes (signdigits)


def default_root() -> Path:
    """``../shared/realimgs-train`` next to the checkout (or the current folder's parent)."""
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        cand = base.parent / 'shared' / 'realimgs-train'
        if cand.is_dir():
            return cand
    return Path.cwd().parent / 'shared' / 'realimgs-train'


def recording_of(source: str, filename: str) -> str:
    name = Path(filename).name
    if source == 'handsdataset':
        m = re.match(r'^(.*?)_?pic\d+\.jpg$', name)
        return m.group(1) if m else Path(name).stem
    if source == 'roboflow_hands':
        return name.split('.rf.')[0]
    if source == 'signdigits':
        m = re.search(r'IMG_(\d+)', name)
        return f'block{int(m.group(1)) // 50}' if m else Path(name).stem
    raise ValueError(f'unknown source {source!r}; known: {SOURCES}')


def _hash_fifth(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 5 == 0


def split_of(source: str, recording: str, folder: str = '') -> str:
    if source == 'handsdataset':
        return 'val' if recording in HANDSDATASET_VAL_RECORDINGS else 'train'
    if source == 'roboflow_hands':
        return 'val' if folder == 'valid' else 'train'
    if source == 'signdigits':
        return 'val' if _hash_fifth(recording) else 'train'
    raise ValueError(f'unknown source {source!r}')


def _handsdataset(root: Path) -> list[CorpusImage]:
    folder = root / 'handsdataset' / 'train'
    boxes: dict[str, list] = {}
    with open(folder / 'boxes.csv', newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row['filename'], []).append(
                [float(row['xmin']), float(row['ymin']), float(row['xmax']), float(row['ymax'])]
            )
    out = []
    for path in sorted(folder.glob('*.jpg')):
        rec = recording_of('handsdataset', path.name)
        out.append(CorpusImage(path, 'handsdataset', rec, split_of('handsdataset', rec), boxes.get(path.name, [])))
    return out


def read_obb_labels(path: Path, width: int, height: int) -> list:
    """YOLOv8 oriented boxes (normalised ``class x1 y1 ... x4 y4``) -> axis-aligned pixel boxes; degenerate
    (zero-area) boxes are dropped."""
    boxes = []
    if not path.is_file():
        return boxes
    for line in path.read_text().split('\n'):
        parts = line.split()
        if len(parts) != 9:
            continue
        xs = [float(v) * width for v in parts[1::2]]
        ys = [float(v) * height for v in parts[2::2]]
        box = [max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys))]
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            boxes.append(box)
    return boxes


def _roboflow(root: Path) -> list[CorpusImage]:
    base = root / 'roboflow_hands'
    train_recs = {recording_of('roboflow_hands', p.name) for p in (base / 'train' / 'images').glob('*.jpg')}
    out = []
    for folder in ('train', 'valid'):
        for path in sorted((base / folder / 'images').glob('*.jpg')):
            rec = recording_of('roboflow_hands', path.name)
            split = split_of('roboflow_hands', rec, folder)
            if split == 'val' and rec in train_recs:
                split = 'train'  # the same source photo, exported twice: keep it out of validation
            boxes = read_obb_labels(base / folder / 'labels' / (path.stem + '.txt'), 320, 320)
            out.append(CorpusImage(path, 'roboflow_hands', rec, split, boxes))
    return out


def _signdigits(root: Path) -> list[CorpusImage]:
    out = []
    for path in sorted((root / 'signdigits').glob('*.jpg')):
        rec = recording_of('signdigits', path.name)
        out.append(
            CorpusImage(path, 'signdigits', rec, split_of('signdigits', rec), [], pad=SIGNDIGITS_PAD, has_boxes=False)
        )
    return out


def list_corpus(root: str | Path | None = None, sources=SOURCES, split: str | None = None) -> list[CorpusImage]:
    """Every image of the chosen sources (sorted, deterministic); ``split`` 'train' / 'val' filters."""
    root = Path(root) if root else default_root()
    if not root.is_dir():
        raise FileNotFoundError(f'training photo folder not found: {root} (expected ../shared/realimgs-train)')
    readers = {'handsdataset': _handsdataset, 'roboflow_hands': _roboflow, 'signdigits': _signdigits}
    images = []
    for source in sources:
        if source not in readers:
            raise ValueError(f'unknown source {source!r}; known: {SOURCES}')
        images += readers[source](root)
    if split is not None:
        if split not in ('train', 'val'):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        images = [im for im in images if im.split == split]
    return images
