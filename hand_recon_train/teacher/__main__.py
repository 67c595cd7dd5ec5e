"""Label the real training photos with the teacher.

``python -m hand_recon_train.teacher label [--root ../shared/realimgs-train] [--out out/teacher/realimgs-train.labels.json]``
runs MediaPipe (``.venv-teacher``, made by ``scripts/setup_teacher.sh``) over every image (resumable: the raw answers
grow in ``<out>.raw.jsonl``), writes the versioned label file and prints counts of hands, flags and disagreements.
``python -m hand_recon_train.teacher report LABELS`` prints the counts of an existing file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .corpus import SOURCES, default_root, list_corpus
from .labels import DEFAULT_SETTINGS, build_labels, label_report, load_labels, write_labels
from .runner import TeacherUnavailable, run_worker

DEFAULT_OUT = Path('out/teacher/realimgs-train.labels.json')


def report_markdown(report: dict) -> str:
    cols = [
        'images',
        'hands',
        'trusted',
        'images_without_hand',
        'boxes',
        'boxes_missed',
        'hands_off_box',
        'flip_missing',
        'flip_disagree',
        'flip_side_differs',
        'duplicates',
        'overlapping',
        'two_same_side',
    ]
    lines = ['| source/split | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|']
    for key, row in report['rows'].items():
        lines.append(f'| {key} | ' + ' | '.join(str(row.get(c, 0)) for c in cols) + ' |')
    if report['skipped']:
        lines.append('')
        lines.append('skipped: ' + ', '.join(f'{k}: {v}' for k, v in report['skipped'].items()))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m hand_recon_train.teacher',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest='cmd', required=True)
    lab = sub.add_parser('label', help='label the training photos')
    lab.add_argument('--root', type=Path, default=None, help='realimgs-train folder (default ../shared/realimgs-train)')
    lab.add_argument('--out', type=Path, default=DEFAULT_OUT)
    lab.add_argument('--sources', nargs='+', default=list(SOURCES), choices=SOURCES)
    lab.add_argument('--limit', type=int, default=None, help='first N images only (smoke runs)')
    rep = sub.add_parser('report', help='counts of a label file')
    rep.add_argument('labels', type=Path)
    rep.add_argument('--root', type=Path, default=None)
    args = parser.parse_args(argv)

    if args.cmd == 'report':
        doc = load_labels(args.labels, root=args.root or default_root())
        print(report_markdown(label_report(doc)))
        return 0
    root = (args.root or default_root()).resolve()
    corpus = list_corpus(root, sources=args.sources)[: args.limit]
    t0 = time.perf_counter()
    try:
        raw = run_worker(
            [{'path': str(im.path), 'pad': im.pad} for im in corpus],
            DEFAULT_SETTINGS,
            args.out.with_suffix('.raw.jsonl'),
        )
    except TeacherUnavailable as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    doc = build_labels(corpus, raw, DEFAULT_SETTINGS, root)
    write_labels(doc, args.out)
    secs = time.perf_counter() - t0
    print(f'[teacher] {len(doc["images"])} images labelled, {len(doc["skipped"])} skipped, {secs:.0f} s -> {args.out}')
    print(report_markdown(label_report(doc)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
