"""The crop cache: crops bit-identical to the on-the-fly ones, refused when made for other labels
or settings, never half-written, resumable, and reachable from the config and the toolbox."""
import os
import pickle
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from mvn.datasets import crop_cache
from mvn.datasets.build import build_dataset, crop_cache_path
from mvn.datasets.crop_cache import CropCacheError, build_crop_cache
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.utils.cfg import ConfigError, load_config
from tests.helpers import write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, 'H36M-Toolbox', 'make_crop_cache.py')


@pytest.fixture
def labels(tmp_path, processed_data):
    """Copies of both label files (their caches are made beside them) over the shared frames."""
    paths = {}
    for split in ('train', 'val'):
        paths[split] = str(tmp_path / os.path.basename(processed_data[split]))
        shutil.copy(processed_data[split], paths[split])
    paths['root'] = processed_data['root']
    return paths


def dataset(labels, split='val', **kwargs):
    return Human36MSingleViewDataset(labels['root'], labels[split], progress=False, **kwargs)


def on_the_fly(path, root, j):
    """Frame j's crop computed here from the label pickle and the frame itself: the reference."""
    with open(path, 'rb') as f:
        entry = pickle.load(f)[j]
    frame = cv2.imread(os.path.join(root, entry['image']), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return entry, frame


def test_cached_crops_are_the_on_the_fly_crops_bit_for_bit(labels):
    from mvn.utils.img import crop_image
    out = crop_cache.default_path(labels['val'])
    assert build_crop_cache(dataset(labels), out, progress=False) == 'built'
    cached = dataset(labels, crop_cache=out)
    plain = dataset(labels)
    assert len(cached) == 24 and not cached.crop_cache.lossy
    for j in range(24):
        entry, frame = on_the_fly(labels['val'], labels['root'], j)
        reference = crop_image(frame, entry['center'], entry['scale'], (192, 256))
        crop = cached[j][0]
        assert crop.dtype == np.uint8 and crop.flags.writeable
        assert np.array_equal(crop, reference) and np.array_equal(crop, plain[j][0])
    # thinned and sharded datasets read the right frames of the cache
    thinned = dataset(labels, crop_cache=out, retain_every_n_frames=5, rank=1, world_size=2)
    assert [int(v) for v in thinned.labels['image_id']] == [int(plain.labels['image_id'][j]) for j in (0, 5, 10, 15, 20)]
    assert np.array_equal(thinned[2][0], plain[20][0])
    # loader workers (forked) open the file again
    loader = torch.utils.data.DataLoader(cached, batch_size=8, num_workers=2)
    images = torch.cat([batch[0] for batch in loader])
    assert torch.equal(images, torch.from_numpy(np.stack([plain[j][0] for j in range(24)])))


def test_a_cache_for_other_labels_or_settings_is_refused(labels):
    out = crop_cache.default_path(labels['val'])
    build_crop_cache(dataset(labels), out, progress=False)
    # the cache of the validation labels given to the training labels
    with pytest.raises(CropCacheError, match=r'crop cache .*h36m_validation.pkl.crops was made for other labels or '
                                             r'crop settings .*; rebuild it with: python H36M-Toolbox/make_crop_cache'
                                             r'.py --labels .*h36m_train.pkl --images .* --out .* --force$'):
        dataset(labels, 'train', crop_cache=out)
    # the same labels with one box moved (a stale cache)
    with open(labels['val'], 'rb') as f:
        entries = pickle.load(f)
    entries[7]['center'] = entries[7]['center'] + np.float32(1)
    with open(labels['val'], 'wb') as f:
        pickle.dump(entries, f)
    with pytest.raises(CropCacheError, match='was made for other labels or crop settings'):
        dataset(labels, crop_cache=out)
    # another crop size gives another fingerprint
    a = dataset(labels)
    b = dataset(labels)
    b.image_shape = (96, 128)
    assert crop_cache.crop_fingerprint(a) != crop_cache.crop_fingerprint(b)


def test_damaged_and_missing_caches_are_errors_naming_the_file(labels, tmp_path):
    out = crop_cache.default_path(labels['val'])
    with pytest.raises(CropCacheError, match=r'crop cache not found: .*\.crops; build it with: python H36M-Toolbox'):
        dataset(labels, crop_cache=out)
    build_crop_cache(dataset(labels), out, progress=False)
    data = open(out, 'rb').read()
    # a flipped byte inside frame 3's blob
    cache = crop_cache.CropCache(out)
    position = cache.data_start + int(cache.offsets[3]) + 100
    damaged = str(tmp_path / 'damaged.crops')
    with open(damaged, 'wb') as f:
        f.write(data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:])
    with pytest.raises(CropCacheError, match=r'crop cache .*damaged.crops: frame 3 is damaged .*rebuild it with'):
        dataset(labels, crop_cache=damaged)[3]
    # a truncated file, and something else entirely
    with open(damaged, 'wb') as f:
        f.write(data[:-10])
    with pytest.raises(CropCacheError, match=r'damaged.crops: truncated or damaged; rebuild it with'):
        dataset(labels, crop_cache=damaged)
    with open(damaged, 'wb') as f:
        f.write(b'hello')
    with pytest.raises(CropCacheError, match=r'damaged.crops: not a crop cache'):
        dataset(labels, crop_cache=damaged)


def test_an_interrupted_build_resumes_and_ends_identical(labels, tmp_path, monkeypatch):
    reference = str(tmp_path / 'reference.crops')
    build_crop_cache(dataset(labels), reference, chunk_frames=5, progress=False)

    out = crop_cache.default_path(labels['val'])
    cropped = []
    real_crop = Human36MSingleViewDataset.crop

    def crop_until_12(self, j):
        if j == 12:
            raise KeyboardInterrupt
        cropped.append(j)
        return real_crop(self, j)
    monkeypatch.setattr(Human36MSingleViewDataset, 'crop', crop_until_12)
    with pytest.raises(KeyboardInterrupt):
        build_crop_cache(dataset(labels), out, chunk_frames=5, progress=False)
    assert not os.path.exists(out)                                 # nothing half-written where readers look
    assert sorted(os.listdir(out + '.parts')) == ['build.json', 'chunk_000000.bin', 'chunk_000001.bin']
    with pytest.raises(CropCacheError, match=r'crop cache .* is incomplete \(its build was interrupted\); finish it '
                                             r'with: python H36M-Toolbox/make_crop_cache.py --labels .* --out .*\.crops$'):
        dataset(labels, crop_cache=out)

    # a chunk file that is not what its header says (say, damaged on disk) is made again
    chunk = os.path.join(out + '.parts', 'chunk_000001.bin')
    with open(chunk, 'r+b') as f:
        f.truncate(os.path.getsize(chunk) - 1)
    said, cropped[:] = [], []
    monkeypatch.setattr(Human36MSingleViewDataset, 'crop', lambda self, j: cropped.append(j) or real_crop(self, j))
    assert build_crop_cache(dataset(labels), out, chunk_frames=5, progress=False, log=said.append) == 'built'
    assert cropped == list(range(5, 24))                            # only the missing chunks
    assert said == ['continuing the interrupted build of %s: 5 of 24 frames done' % out]
    assert not os.path.exists(out + '.parts')
    assert open(out, 'rb').read() == open(reference, 'rb').read()
    # parallel workers write the same file
    parallel = str(tmp_path / 'parallel.crops')
    build_crop_cache(dataset(labels), parallel, chunk_frames=5, workers=2, progress=False)
    assert open(parallel, 'rb').read() == open(reference, 'rb').read()


def test_the_lossy_codec_is_opt_in_close_and_says_so(labels):
    out = crop_cache.default_path(labels['val'])
    build_crop_cache(dataset(labels), out, codec='jpeg95', progress=False)
    with pytest.warns(UserWarning, match='holds lossy jpeg95 crops'):
        lossy = dataset(labels, crop_cache=out)
    exact = dataset(labels)
    differences = [np.abs(lossy[j][0].astype(int) - exact[j][0].astype(int)) for j in range(0, 24, 6)]
    assert any(d.max() > 0 for d in differences)                   # really lossy
    assert all(d.mean() < 2.0 for d in differences)                # quality 95: close
    with pytest.raises(ValueError, match="unknown crop cache codec 'png'; choose one of: zstd, jpeg95"):
        build_crop_cache(dataset(labels), out + '2', codec='png', progress=False)


def test_config_auto_uses_a_cache_beside_the_labels_and_a_folder_names_the_file(labels, tmp_path):
    config = write_config(tmp_path / 'auto.yaml', {'root': labels['root'], 'train': labels['train'],
                                                   'val': labels['val']}, **{'dataset.crop_cache': 'auto'})
    cfg = load_config(config, resolve_paths=True)
    assert cfg.dataset.crop_cache == 'auto'
    assert build_dataset(cfg, 'val').crop_cache is None             # no cache yet: crops on the fly
    build_crop_cache(dataset(labels), crop_cache.default_path(labels['val']), progress=False)
    assert build_dataset(cfg, 'val').crop_cache.path == labels['val'] + '.crops'
    assert build_dataset(cfg, 'train').crop_cache is None
    # a folder: the file named after the labels in it, which must be there
    folder = tmp_path / 'caches'
    folder.mkdir()
    cfg.dataset.crop_cache = str(folder)
    assert crop_cache_path(cfg, 'train') == str(folder / 'h36m_train.pkl.crops')
    with pytest.raises(CropCacheError, match='crop cache not found: .*caches/h36m_train.pkl.crops; build it with'):
        build_dataset(cfg, 'train')
    cfg.dataset.crop_cache = str(tmp_path / 'absent')
    with pytest.raises(ConfigError, match="'dataset.crop_cache': .*absent is not a folder"):
        build_dataset(cfg, 'val')
    # relative folders in a config are resolved like every path
    relative = write_config(tmp_path / 'rel.yaml', {'root': labels['root'], 'train': labels['train'],
                                                    'val': labels['val']}, **{'dataset.crop_cache': 'caches'})
    assert load_config(relative, resolve_paths=True).dataset.crop_cache == str(folder)


def run_tool(capsys, *args):
    """make_crop_cache.py's main() in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = crop_cache.main(list(args), kind='human36m')
    out, err = capsys.readouterr()
    return code, out, err


def test_the_toolbox_script_builds_the_cache_beside_the_labels(labels):
    made = subprocess.run([sys.executable, TOOL, '--labels', labels['val'], '--images', labels['root'],
                           '--workers', '1'], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == '%s is ready (24 frames, zstd)' % (labels['val'] + '.crops')


def test_the_command_keeps_and_replaces_only_when_asked(labels, tmp_path, capsys):
    out = labels['val'] + '.crops'
    assert run_tool(capsys, '--labels', labels['val'], '--images', labels['root'], '--workers', '1')[:2] == \
        (0, '%s is ready (24 frames, zstd)\n' % out)
    assert run_tool(capsys, '--labels', labels['val'], '--images', labels['root'])[:2] == \
        (0, '%s is up to date (24 frames, zstd)\n' % out)
    # another file at --out is not replaced without --force
    before = open(out, 'rb').read()
    code, _, err = run_tool(capsys, '--labels', labels['train'], '--images', labels['root'], '--out', out)
    assert code == 1 and open(out, 'rb').read() == before
    assert err.strip().splitlines() == ['error: %s exists and holds other crops (other labels, settings or '
                                        'codec, or a damaged file); pass --force to replace it' % out]
    code, _, _ = run_tool(capsys, '--labels', labels['train'], '--images', labels['root'], '--out', out, '--force')
    assert code == 0 and open(out, 'rb').read() != before
    # bad input: one line, exit 1
    code, _, err = run_tool(capsys, '--labels', str(tmp_path / 'absent.pkl'), '--images', labels['root'])
    assert code == 1 and err.strip().splitlines() == ['error: label file not found: %s' % (tmp_path / 'absent.pkl')]
    for workers in ('1', '2'):                  # an error in a worker process reads the same
        code, _, err = run_tool(capsys, '--labels', labels['val'], '--images', str(tmp_path), '--out',
                                str(tmp_path / 'x.crops'), '--workers', workers)
        last = err.strip().splitlines()[-1]          # after the progress bar
        assert code == 1 and 'Traceback' not in err
        assert last.startswith('error: missing image: %s' % tmp_path) and last.endswith('.jpg')


def test_training_and_evaluation_figures_are_the_same_with_the_cache(labels, tmp_path):
    """train.py with dataset.crop_cache: auto gives the run of the frames to the last digit."""
    import glob
    import json

    import train
    for split in ('train', 'val'):
        build_crop_cache(dataset(labels, split), crop_cache.default_path(labels[split]), progress=False)
    data = {'root': labels['root'], 'train': labels['train'], 'val': labels['val']}
    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for setting in ('', 'auto'):
            config = write_config(tmp_path / ('c%s.yaml' % setting), data, **{'dataset.crop_cache': setting})
            logdir = tmp_path / ('logs' + setting)
            train.main(train.parse_args(['--config', config, '--logdir', str(logdir), '--epochs', '1',
                                         '--device', 'cpu']))
            (run_dir,) = glob.glob(str(logdir / '*@*'))
            with open(os.path.join(run_dir, 'eval_epoch_001.json')) as f:
                results[setting] = json.load(f)
            with open(os.path.join(run_dir, 'log.txt')) as f:
                results[setting]['log'] = f.read()
    finally:
        torch.set_num_threads(threads)
    assert 'from the crop cache' in results['auto']['log'] and 'from the crop cache' not in results['']['log']
    assert results['auto']['summary'] == results['']['summary']
    assert results['auto']['actions'] == results['']['actions']
