#!/usr/bin/env python3
"""Start-up time and peak memory: the label cache vs the official per-frame dict list.

Generates a validation-sized label pickle (543,344 frames by default, full official schema), then,
each in a fresh process, builds the dataset and reads N items (crops from real-size JPEG frames):

* plain pickle: what the official dataset class does, i.e. ``pickle.loads`` of the whole file
  into one dict per frame, the per-frame action/subject/video index lists, then items read from
  the dicts;
* cache: ``Human36MSingleViewDataset`` over the memory-mapped columnar cache (built once before,
  that one-off conversion is reported too).

    python bench/bench_label_cache.py                 # 543,344 labels, 1,000 items
    python bench/bench_label_cache.py --frames 50000  # quicker

Prints seconds and peak resident memory of both side by side, and the ratios (targets: time
<= 10 %, memory <= 25 %).
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_labels(path, image_root, frames, items, seed=0):
    """A label file of ``frames`` entries shaped like the real one (S9/S11, 30 action trials x 4
    cameras), and one JPEG frame hard-linked under the paths of the items that will be read."""
    import cv2
    import numpy as np
    from mvn.datasets import h36m_meta as meta
    from mvn.datasets.h36m_labels import make_label
    from mvn.datasets.synthetic import sequence_ground_truth
    from mvn.datasets.synthetic_motion import render_frame

    rng = np.random.default_rng(seed)
    sequences = meta.sequences(meta.TEST_SUBJECTS)
    per_sequence = -(-frames // len(sequences))
    joints_cam, joints_2d, cpn = sequence_ground_truth(9, 2, 1, 1, 1)
    labels = []
    for video_id, (s, a, sa, c) in enumerate(sequences):
        camera = meta.camera_dict(s, c)
        template = make_label(subject=s, action=a, subaction=sa, camera_index=c, image_id=1, video_id=video_id,
                              nposes=per_sequence, camera=camera, joints_3d_mm=joints_cam[0].astype(np.float32),
                              joints_2d_gt_px=joints_2d[0].astype(np.float32), joints_2d_cpn_px=cpn[0],
                              image_width=1000, image_height=1002, image_relpath='')
        for i in range(min(per_sequence, frames - len(labels))):
            entry = dict(template)
            for key in ('joints_2d_gt', 'joints_2d_cpn', 'joints_3d', 'joints_2d_gt_crop', 'joints_2d_cpn_crop'):
                entry[key] = template[key] + rng.normal(0, 1e-3, template[key].shape).astype(template[key].dtype)
            entry['joints_vis'] = np.ones((17, 3))
            entry['box'] = template['box'].copy()
            entry['image_id'] = i + 1
            entry['image'] = meta.image_relpath(s, a, sa, c - 1, i + 1)
            labels.append(entry)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(labels, f, protocol=pickle.HIGHEST_PROTOCOL)

    frame_path = os.path.join(image_root, 'frame.jpg')
    os.makedirs(image_root, exist_ok=True)
    cv2.imwrite(frame_path, render_frame(joints_2d[0], joints_cam[0], 1))
    for index in item_indices(frames, items):
        target = os.path.join(image_root, labels[index]['image'])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.link(frame_path, target)


def item_indices(frames, items):
    step = max(frames // items, 1)
    return list(range(0, frames, step))[:items]


def build_plain_pickle(labels_path, image_root):
    """The official class's construction: every frame a dict, index lists by list comprehension."""
    import numpy as np
    subjects = ['S1', 'S5', 'S6', 'S7', 'S8', 'S9', 'S11']
    with open(labels_path, 'rb') as f:
        labels = pickle.loads(f.read())
    action_idx = (np.array([x['action'] for x in labels]) - 2) * 2 + (np.array([x['subaction'] for x in labels]) - 1)
    subject_idx = np.array([subjects.index('S%d' % x['subject']) for x in labels])
    video_idx = np.array([x['video_id'] for x in labels])
    return labels, (action_idx, subject_idx, video_idx)


def read_plain_pickle(state, image_root, index):
    """The official __getitem__: path from the dict, imread, crop."""
    import cv2
    from mvn.utils.img import crop_image
    shot = state[0][index]
    folder = 's_%02d_act_%02d_subact_%02d_ca_%02d' % (shot['subject'], shot['action'], shot['subaction'],
                                                      shot['camera_id'] + 1)
    name = '%s_%06d.jpg' % (folder, shot['image_id'])
    image = cv2.imread(os.path.join(image_root, folder, name), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    crop = crop_image(image, shot['center'], shot['scale'], (192, 256))
    return crop, shot['joints_3d'][None], shot['joints_2d_cpn'], shot['joints_2d_cpn_crop']


def build_cache(labels_path, image_root):
    from mvn.datasets.human36m import Human36MSingleViewDataset
    return Human36MSingleViewDataset(root=image_root, labels_path=labels_path, image_shape=[192, 256],
                                     train=False, test=True, progress=False)


def read_cache(dataset, image_root, index):
    return dataset[index]


def peak_rss_mib():
    """This process's own high-water mark (VmHWM; unlike ru_maxrss it does not carry over the
    parent's memory through fork and exec)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def child(mode, labels_path, image_root, frames, items):
    """Runs one side and prints JSON: build and read seconds, peak RSS in MiB."""
    import cv2  # noqa: F401  (both sides import the same modules before timing)
    import numpy  # noqa: F401
    import torch.utils.data  # noqa: F401
    from mvn.datasets import human36m  # noqa: F401
    build, read = (build_plain_pickle, read_plain_pickle) if mode == 'pickle' else (build_cache, read_cache)
    start = time.perf_counter()
    state = build(labels_path, image_root)
    built = time.perf_counter()
    for index in item_indices(frames, items):
        read(state, image_root, index)
    done = time.perf_counter()
    print(json.dumps({'build': built - start, 'read': done - built, 'peak_mib': peak_rss_mib()}))


def measure(mode, args):
    out = subprocess.run([sys.executable, __file__, '--child', mode, '--out', args.out, '--frames', str(args.frames),
                          '--items', str(args.items)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=543344, help='labels in the generated file')
    parser.add_argument('--items', type=int, default=1000, help='items read after building the dataset')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'out'), help='scratch folder')
    parser.add_argument('--child', choices=['pickle', 'cache'], help=argparse.SUPPRESS)
    parser.add_argument('--prepare', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    labels_path = os.path.join(args.out, 'h36m_validation_%d.pkl' % args.frames)
    image_root = os.path.join(args.out, 'images_%d' % args.frames)
    if args.child:
        return child(args.child, labels_path, image_root, args.frames, args.items)

    if args.prepare:
        if not os.path.isfile(labels_path):
            start = time.perf_counter()
            make_labels(labels_path, image_root, args.frames, args.items)
            print('generated %d labels in %.1f s, %.0f MiB on disk'
                  % (args.frames, time.perf_counter() - start, os.path.getsize(labels_path) / 2 ** 20))
        from mvn.datasets.label_cache import load_labels
        start = time.perf_counter()
        load_labels(labels_path, progress=False)
        print('label cache ready in %.1f s (a one-off conversion when it is not there yet)'
              % (time.perf_counter() - start))
        return None

    # Preparation runs in its own process, so that this one stays small and forks small children.
    subprocess.run([sys.executable, __file__, '--prepare', '--out', args.out, '--frames', str(args.frames),
                    '--items', str(args.items)], check=True)
    plain, cache = measure('pickle', args), measure('cache', args)
    print('\n%d labels; build the dataset, then read %d items (crops of 1000x1002 JPEG frames):'
          % (args.frames, args.items))
    print('%-24s %9s %9s %9s %14s' % ('', 'build s', 'read s', 'total s', 'peak RSS MiB'))
    for name, r in (('plain pickle (official)', plain), ('columnar cache', cache)):
        print('%-24s %9.2f %9.2f %9.2f %14.0f' % (name, r['build'], r['read'], r['build'] + r['read'], r['peak_mib']))
    print('%-24s %8.1f%% %9s %8.1f%% %13.1f%%' % (
        'cache / pickle', 100 * cache['build'] / plain['build'], '',
        100 * (cache['build'] + cache['read']) / (plain['build'] + plain['read']),
        100 * cache['peak_mib'] / plain['peak_mib']))


if __name__ == '__main__':
    main()
