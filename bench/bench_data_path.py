#!/usr/bin/env python3
"""Items per second of every way to get a crop, with one core and with N loader workers, per-batch
waits, and training samples per second end to end, with and without the crop cache.

Frames: synthetic Human3.6M with photograph-like scenes (``backdrop: natural``, about 100 KB per
1000x1000 JPEG, see mvn/datasets/synthetic_scene.py), made once under --workdir.

Paths, each measured in a fresh process (heap settings are per process):

* official: what the official dataset does per item (``cv2.imread`` of the whole frame, the
  crop's ``warpAffine``, labels from a list of dicts), with glibc's default heap settings;
* full decode: ``Human36MSingleViewDataset`` decoding whole frames (full decode + warp, tuned heap;
  the dataset's path when the partial decoder is not built);
* exact region decode: the same dataset decoding only the rows and columns the crop reads
  (mvn/datasets/jpeg_region.c, libjpeg-turbo; crops bit-identical to the full decode; the default
  once built with ``python setup.py build_ext --inplace``);
* cache-zstd, cache-jpeg95: the same dataset reading a crop cache of each codec.

    python bench/bench_data_path.py                  # items/s, 1 core and --workers, per-batch waits
    python bench/bench_data_path.py --end-to-end     # + train.py samples/s on the synthetic config
    python bench/bench_data_path.py --lossy-p1       # + P1 of a trained model, exact vs lossy cache
    python bench/bench_data_path.py --quick          # a check that everything runs (figures meaningless)

Per-batch waits: a consumer that needs --step-ms per batch (a stand-in for the GPU step) reads
batches from N workers; the wait before each batch is printed for the first rounds, and the share
of all waiting that falls on every N-th batch (near 100 %: the "stall every num_workers
iterations" pattern of batch-sized worker tasks; near 1/N: no pattern).
"""
import argparse
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PATHS = ('official', 'full decode', 'exact region decode', 'cache-zstd', 'cache-jpeg95')


# ---------------------------------------------------------------------------------------------
# data

def make_data(workdir, quick):
    """{'root', 'train', 'val'} of natural-backdrop synthetic frames (made once per size)."""
    from mvn.datasets.synthetic import generate_processed
    spec = dict(subjects=(1, 9), actions=(2, 3) if quick else (2, 3, 4, 5), subactions=(1, 2), cameras=(1, 2, 3, 4),
                frames=2 if quick else 8, seed=0, backdrop='natural', jpeg_quality=90)
    base = os.path.join(workdir, 'frames_quick' if quick else 'frames')
    paths = {'root': os.path.join(base, 'images'), 'train': os.path.join(base, 'h36m_train.pkl'),
             'val': os.path.join(base, 'h36m_validation.pkl')}
    if not os.path.isfile(paths['val']):
        generate_processed(paths['root'], paths['train'], paths['val'], progress=True, **spec)
    return paths


def build_caches(data, workers):
    """Both codecs' caches of the validation labels: {codec: (path, frames built per second, bytes
    per 1,000 frames)}."""
    from mvn.datasets.crop_cache import build_crop_cache
    from mvn.datasets.human36m import Human36MSingleViewDataset
    caches = {}
    for codec in ('zstd', 'jpeg95'):
        path = os.path.join(os.path.dirname(data['val']), codec, os.path.basename(data['val']) + '.crops')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)
        dataset = Human36MSingleViewDataset(data['root'], data['val'], progress=False)
        started = time.perf_counter()
        build_crop_cache(dataset, path, codec=codec, workers=workers, progress=False)
        seconds = time.perf_counter() - started
        caches[codec] = (path, len(dataset) / seconds, os.path.getsize(path) / len(dataset) * 1000)
    return caches


# ---------------------------------------------------------------------------------------------
# one measurement, in a process of its own

class OfficialLike:
    """The official dataset's item: labels from a list of dicts, cv2.imread, crop_image."""

    def __init__(self, root, labels_path):
        with open(labels_path, 'rb') as f:
            self.labels = pickle.loads(f.read())
        self.root = root

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        import cv2
        import numpy as np
        from mvn.utils.img import crop_image
        shot = self.labels[idx]
        image = cv2.imread(os.path.join(self.root, shot['image']), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        image = crop_image(image, shot['center'], shot['scale'], (192, 256))
        return image, np.expand_dims(shot['joints_3d'], axis=0), shot['joints_2d_cpn'], shot['joints_2d_cpn_crop']


def child_dataset(job):
    if job['path'] == 'official':
        return OfficialLike(job['root'], job['labels'])
    from mvn.datasets import images
    if job['path'] == 'exact region decode' and not images.region_decoding_available():
        raise SystemExit('the partial decoder is not built: python setup.py build_ext --inplace')
    from mvn.datasets.human36m import Human36MSingleViewDataset
    return Human36MSingleViewDataset(job['root'], job['labels'], progress=False, crop_cache=job.get('cache'))


def child(job):
    """Measures one path; prints a JSON line."""
    import numpy as np
    dataset = child_dataset(job)
    order = np.random.default_rng(0).permutation(len(dataset))
    items = job['items']
    picks = [int(order[i % len(order)]) for i in range(items)]
    for j in picks[:min(len(picks), 32)]:          # warm up: files into the page cache, code paths
        dataset[j]
    if job['workers'] == 0:
        import cv2
        cv2.setNumThreads(1)
        started = time.perf_counter()
        for j in picks:
            dataset[j]
        return {'items_per_s': items / (time.perf_counter() - started)}
    import torch
    subset = torch.utils.data.Subset(dataset, picks)
    loader = torch.utils.data.DataLoader(subset, batch_size=job['batch'], num_workers=job['workers'])
    waits = []
    started = asked = time.perf_counter()
    for _ in loader:
        waits.append(time.perf_counter() - asked)
        if job['step_ms']:
            time.sleep(job['step_ms'] / 1000)
        asked = time.perf_counter()
    return {'items_per_s': items / (time.perf_counter() - started), 'waits_ms': [1000 * w for w in waits]}


def measure(job):
    env = dict(os.environ, OMP_NUM_THREADS='1', CAPF_WHOLE_FRAME_DECODE='1' if job['path'] == 'full decode' else '0')
    result = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', json.dumps(job)],
                            capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode != 0:
        raise SystemExit('error: measuring %s failed: %s' % (job['path'], result.stderr.strip().splitlines()[-1:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# end to end

def train_run(workdir, data, name, crop_cache, epochs, extra=(), whole_frames=False):
    """samples/s and data-wait of train.py on the synthetic config over ``data``; the run dir."""
    import yaml
    with open(os.path.join(REPO, 'experiments', 'synthetic', 'synthetic.yaml')) as f:
        tree = yaml.safe_load(f)
    tree['dataset'] = {'root': data['root'], 'train_labels_path': data['train'], 'val_labels_path': data['val'],
                       'crop_cache': crop_cache}
    tree['train']['n_epochs'] = epochs or tree['train']['n_epochs']
    config = os.path.join(workdir, name + '.yaml')
    with open(config, 'w') as f:
        yaml.safe_dump(tree, f)
    logdir = os.path.join(workdir, 'logs_' + name)
    shutil.rmtree(logdir, ignore_errors=True)
    result = subprocess.run([sys.executable, 'train.py', '--config', config, '--logdir', logdir, '--device', 'cpu',
                             *extra], capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, CAPF_WHOLE_FRAME_DECODE='1' if whole_frames else '0'))
    if result.returncode != 0:
        raise SystemExit('error: train.py (%s) failed: %s' % (name, result.stderr.strip().splitlines()[-1:]))
    (run_dir,) = glob.glob(os.path.join(logdir, '*@*'))
    return config, run_dir


def tensorboard_mean(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'))
    events.Reload()
    values = [e.value for e in events.Scalars(tag)]
    return sum(values) / len(values)


def evaluate_p1(config, checkpoint, workdir, name):
    logdir = os.path.join(workdir, 'logs_' + name)
    shutil.rmtree(logdir, ignore_errors=True)
    result = subprocess.run([sys.executable, 'train.py', '--config', config, '--eval', '--checkpoint', checkpoint,
                             '--logdir', logdir, '--device', 'cpu'], capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit('error: evaluation (%s) failed: %s' % (name, result.stderr.strip().splitlines()[-1:]))
    (path,) = glob.glob(os.path.join(logdir, '*@*', 'eval_results.json'))
    with open(path) as f:
        return json.load(f)['summary']['p1_mm']


def end_to_end(args, data):
    """Training samples/s of the synthetic config: frames decoded whole, frames decoded in part,
    the exact cache; optionally P1 with the exact and the lossy cache."""
    from mvn.datasets.crop_cache import build_crop_cache, default_path
    from mvn.datasets.human36m import Human36MSingleViewDataset
    # P1 needs a trained model: the synthetic config's own epochs; speed needs only a couple.
    epochs = 1 if args.quick else (None if args.lossy_p1 else 2)
    print('\nend to end: train.py on the synthetic config (hrnet_tiny, CPU), %s epoch(s)'
          % (epochs or "the config's"))
    _, whole_dir = train_run(args.workdir, data, 'whole_frames', '', epochs, whole_frames=True)
    _, region_dir = train_run(args.workdir, data, 'frames', '', epochs)
    for split in ('train', 'val'):
        dataset = Human36MSingleViewDataset(data['root'], data[split], progress=False)
        path = default_path(data[split])
        if not os.path.exists(path):
            build_crop_cache(dataset, path, workers=args.workers[-1], progress=False)
    cached_config, cached_dir = train_run(args.workdir, data, 'cache', 'auto', epochs)
    rows = [('full decode', whole_dir), ('exact region decode', region_dir), ('crop cache (zstd)', cached_dir)]
    print('%-22s %12s %10s' % ('', 'samples/s', 'data-wait'))
    for name, run_dir in rows:
        print('%-22s %12.1f %9.0f%%' % (name, tensorboard_mean(run_dir, 'time/train_samples_per_s'),
                                         100 * tensorboard_mean(run_dir, 'time/data_wait_fraction')))
    if args.lossy_p1:
        lossy = os.path.join(args.workdir, 'lossy_caches')
        os.makedirs(lossy, exist_ok=True)
        dataset = Human36MSingleViewDataset(data['root'], data['val'], progress=False)
        path = os.path.join(lossy, os.path.basename(default_path(data['val'])))
        if not os.path.exists(path):
            build_crop_cache(dataset, path, codec='jpeg95', workers=args.workers[-1], progress=False)
        best = os.path.join(cached_dir, 'checkpoints', 'best_epoch.bin')
        exact_p1 = evaluate_p1(cached_config, best, args.workdir, 'eval_exact')
        _write_crop_cache_setting(cached_config, lossy, os.path.join(args.workdir, 'lossy.yaml'))
        lossy_p1 = evaluate_p1(os.path.join(args.workdir, 'lossy.yaml'), best, args.workdir, 'eval_lossy')
        print('\nP1 of the trained model on %d validation frames: exact cache %.4f mm, jpeg95 cache %.4f mm '
              '(difference %+.4f mm)' % (len(dataset), exact_p1, lossy_p1, lossy_p1 - exact_p1))


def _write_crop_cache_setting(config, value, out):
    import yaml
    with open(config) as f:
        tree = yaml.safe_load(f)
    tree['dataset']['crop_cache'] = value
    with open(out, 'w') as f:
        yaml.safe_dump(tree, f)


# ---------------------------------------------------------------------------------------------

def stall_share(waits, period):
    """Share of the total wait on batches k*period (k >= 1; the first batch, the pipeline
    filling, left out)."""
    rest = waits[1:]
    total = sum(rest)
    return sum(w for i, w in enumerate(rest, 1) if i % period == 0) / total if total > 0 else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', default=os.path.join(tempfile.gettempdir(), 'capf_bench_data_path'),
                        help='frames and caches are made here once (default: %(default)s)')
    parser.add_argument('--items', type=int, default=2000, help='items per measurement')
    parser.add_argument('--workers', type=int, nargs='+', default=[os.cpu_count() or 1], help='loader workers')
    parser.add_argument('--batch', type=int, default=64, help='batch size of the loader runs')
    parser.add_argument('--step-ms', type=float, default=None,
                        help='consumer time per batch in the wait-pattern run (default: half the time the '
                             "official path's workers take per batch: loader-bound)")
    parser.add_argument('--end-to-end', action='store_true', help='also train.py samples/s with and without the cache')
    parser.add_argument('--lossy-p1', action='store_true', help='also P1 with the exact and the lossy cache '
                                                                '(implies --end-to-end)')
    parser.add_argument('--quick', action='store_true', help='tiny sizes: checks that everything runs')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.items, args.batch, args.workers = 64, 8, [2]
    os.makedirs(args.workdir, exist_ok=True)
    data = make_data(args.workdir, args.quick)
    caches = build_caches(data, args.workers[-1])
    frames = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data['root'], '*', '*.jpg')))
    n_frames = len(glob.glob(os.path.join(data['root'], '*', '*.jpg')))
    print('frames: %d natural-backdrop JPEGs, %.0f KB each on average' % (n_frames, frames / n_frames / 1000))
    for codec, (path, rate, per_1000) in caches.items():
        print('crop cache %-6s: %.1f MB per 1,000 frames, built at %.0f frames/s with %d workers'
              % (codec, per_1000 / 1e6, rate, args.workers[-1]))

    sources = {'official': None, 'full decode': None, 'exact region decode': None, 'cache-zstd': caches['zstd'][0],
               'cache-jpeg95': caches['jpeg95'][0]}
    results = {}
    for path, cache in sources.items():
        job = {'path': path, 'root': data['root'], 'labels': data['val'], 'cache': cache, 'items': args.items,
               'batch': args.batch, 'step_ms': 0}
        results[path] = {0: measure(dict(job, workers=0))['items_per_s']}
        for n in args.workers:
            results[path][n] = measure(dict(job, workers=n))['items_per_s']
    header = '%-22s %12s' % ('items/s', '1 core') + ''.join('%12s' % ('%d workers' % n) for n in args.workers) \
        + '%14s' % 'vs official'
    print('\n' + header)
    for path in PATHS:
        row = results[path]
        print('%-22s %12.0f' % (path, row[0]) + ''.join('%12.0f' % row[n] for n in args.workers)
              + '%13.1fx' % (row[0] / results['official'][0]))

    n = args.workers[-1]
    # Default: the consumer is twice as fast as the official loader delivers batches (loader-bound).
    step_ms = args.step_ms if args.step_ms is not None else 0.5 * args.batch / results['official'][n] * 1000
    print('\nper-batch waits (ms) with %d workers, batch %d, a %.0f ms step per batch:' % (n, args.batch, step_ms))
    for path in ('official', 'full decode', 'exact region decode', 'cache-zstd'):
        job = {'path': path, 'root': data['root'], 'labels': data['val'], 'cache': sources[path],
               'items': args.items, 'batch': args.batch, 'step_ms': step_ms, 'workers': n}
        waits = measure(job)['waits_ms']
        shown = ' '.join('%.0f' % w for w in waits[:3 * n + 1])
        print('%-20s %s%s\n%20s share of the waiting on batches %d, %d, %d, ...: %.0f%%, total wait %.2f s'
              % (path, shown, ' ...' if len(waits) > 3 * n + 1 else '', '', n, 2 * n, 3 * n,
                 100 * stall_share(waits, n), sum(waits) / 1000))
    if args.end_to_end or args.lossy_p1:
        end_to_end(args, data)


if __name__ == '__main__':
    main()
