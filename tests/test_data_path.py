"""The data path around a run: thinned per-epoch validation (val.retain_every_n_frames) with a
final evaluation of the best checkpoint on every frame, and the time steps wait for their data."""
import glob
import json
import os
import pickle
import re

import numpy as np
import pytest
import torch

import train
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.evaluator import Evaluator
from mvn.utils.cfg import ConfigError, load_config
from tests.helpers import run_main, write_config


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_every_nth_frame_is_the_official_selection(processed_data):
    with open(processed_data['val'], 'rb') as f:
        entries = pickle.load(f)
    assert len(entries) == 24
    full = Human36MSingleViewDataset(processed_data['root'], processed_data['val'], progress=False)
    thinned = Human36MSingleViewDataset(processed_data['root'], processed_data['val'], progress=False,
                                        retain_every_n_frames=5)
    # The official test set indices [::5] of 24 frames: 0, 5, 10, 15, 20.
    kept = [0, 5, 10, 15, 20]
    assert len(thinned) == thinned.file_size == 5
    for i, j in enumerate(kept):
        crop, joints_3d, keypoints, keypoints_crop = thinned[i]
        assert np.array_equal(joints_3d[0], entries[j]['joints_3d'])
        assert np.array_equal(keypoints_crop, entries[j]['joints_2d_cpn_crop'])
        assert int(thinned.labels['image_id'][i]) == entries[j]['image_id']
        assert int(thinned.labels['action'][i]) == entries[j]['action']
        assert np.array_equal(crop, full[j][0])
    # Shards split the kept frames, not the file: 2 + 3 over two ranks.
    shards = [Human36MSingleViewDataset(processed_data['root'], processed_data['val'], progress=False,
                                        retain_every_n_frames=5, rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in shards] == [2, 3] and shards[0].dist_size == [2, 3]
    assert [int(s[i][1][0, 0, 0] == entries[j]['joints_3d'][0, 0]) for s, i, j in
            ((shards[0], 1, 5), (shards[1], 0, 10), (shards[1], 2, 20))] == [1, 1, 1]
    # the evaluation protocol takes the kept frames' poses, and only those
    poses = torch.from_numpy(np.stack([entries[j]['joints_3d'] for j in kept])[:, None]).float()
    assert thinned.evaluate(poses, poses).summary['p1_mm'] == 0
    with pytest.raises(ValueError, match='24 poses to evaluate but .* has 5 frames'):
        thinned.evaluate(torch.zeros(24, 1, 17, 3), torch.zeros(24, 1, 17, 3))


@pytest.mark.parametrize('value', [0, -2, 1.5])
def test_retain_every_n_frames_must_be_a_positive_integer(tmp_path, processed_data, value):
    config = write_config(tmp_path / 'bad.yaml', processed_data, **{'val.retain_every_n_frames': value})
    with pytest.raises(ConfigError, match="val.retain_every_n_frames"):
        load_config(config)


def test_thinned_epochs_then_the_best_checkpoint_on_every_frame(tmp_path, processed_data, monkeypatch, capsys,
                                                                one_thread):
    config = write_config(tmp_path / 'thin.yaml', processed_data, **{'val.retain_every_n_frames': 5,
                                                                       'train.volume_net_lr': 0.01})
    # Epoch 1 is made the best whatever the data says, so that the final evaluation must load
    # it rather than keep the epoch-2 weights the model holds at the end.
    real_call = Evaluator.__call__

    def epoch_one_best(self, model, epoch, json_name, **kwargs):
        report = real_call(self, model, epoch, json_name, **kwargs)
        if report is not None and json_name.startswith('eval_epoch'):
            report.score = float(epoch)
        return report
    monkeypatch.setattr(Evaluator, '__call__', epoch_one_best)
    run_main('--config', config, '--logdir', str(tmp_path / 'logs'))
    out = capsys.readouterr().out
    (run_dir,) = glob.glob(str(tmp_path / 'logs' / '*@*'))
    assert 'evaluating on 5 frames (1 in 5; the best checkpoint on all at the end)' in out
    for epoch in (1, 2):
        result = read_json(os.path.join(run_dir, 'eval_epoch_%03d.json' % epoch))
        assert (result['frames'], result['retain_every_n_frames']) == (5, 5)
    final = read_json(os.path.join(run_dir, 'eval_best_all_frames.json'))
    best = os.path.join(run_dir, 'checkpoints', 'best_epoch.bin')
    assert (final['frames'], final['retain_every_n_frames'], final['epoch'], final['checkpoint']) == (24, 1, 1, best)
    line = re.search(r'\[Best epoch 1, every frame\] val-p1: ([\d.]+) \| val-p2: [\d.]+', out)
    assert line and float(line.group(1)) == round(final['summary']['p1_mm'], 1)
    with open(os.path.join(run_dir, 'log.txt')) as f:
        assert '[Best epoch 1, every frame]' in f.read()

    # --eval of the best checkpoint (every frame, whatever the config says) gives the same figures.
    run_main('--config', config, '--eval', '--checkpoint', best, '--logdir', str(tmp_path / 'eval'))
    (eval_dir,) = glob.glob(str(tmp_path / 'eval' / '*@*'))
    evaluated = read_json(os.path.join(eval_dir, 'eval_results.json'))
    assert (evaluated['frames'], evaluated['retain_every_n_frames']) == (24, 1)
    assert evaluated['summary'] == final['summary'] and evaluated['actions'] == final['actions']
    # ... which are not those of the last weights (epoch 2), so the best ones were loaded.
    last = os.path.join(run_dir, 'checkpoints', 'last.pth')
    run_main('--config', config, '--eval', '--checkpoint', last, '--logdir', str(tmp_path / 'eval_last'))
    (last_dir,) = glob.glob(str(tmp_path / 'eval_last' / '*@*'))
    assert read_json(os.path.join(last_dir, 'eval_results.json'))['summary'] != final['summary']

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'))
    events.Reload()
    assert [(e.step, round(e.value, 3)) for e in events.Scalars('val_all_frames/p1')] == \
        [(1, round(final['summary']['p1_mm'], 3))]
    assert [e.step for e in events.Scalars('val/p1')] == [1, 2]


def test_a_run_stopped_during_its_final_evaluation_does_it_when_resumed(tmp_path, processed_data, monkeypatch,
                                                                        capsys, one_thread):
    from mvn import engine
    config = write_config(tmp_path / 'thin.yaml', processed_data, **{'val.retain_every_n_frames': 5})
    logs = str(tmp_path / 'logs')
    real_call = Evaluator.__call__

    def stopped_in_the_final_evaluation(self, model, epoch, json_name, **kwargs):
        if json_name == 'eval_best_all_frames.json':
            raise KeyboardInterrupt
        return real_call(self, model, epoch, json_name, **kwargs)
    monkeypatch.setattr(Evaluator, '__call__', stopped_in_the_final_evaluation)
    with pytest.raises(KeyboardInterrupt):
        run_main('--config', config, '--logdir', logs, '--epochs', '1')
    (run_dir,) = glob.glob(os.path.join(logs, '*@*'))
    final_json = os.path.join(run_dir, 'eval_best_all_frames.json')
    assert os.path.isfile(os.path.join(run_dir, 'eval_epoch_001.json')) and not os.path.exists(final_json)

    monkeypatch.setattr(Evaluator, '__call__', real_call)
    trained = []
    real_train_one_epoch = engine.train_one_epoch
    monkeypatch.setattr(engine, 'train_one_epoch', lambda *a, **k: trained.append(a[4]) or real_train_one_epoch(*a, **k))
    capsys.readouterr()
    run_main('--config', config, '--logdir', logs, '--epochs', '1', '--resume', 'auto')
    out = capsys.readouterr().out
    assert trained == [] and 'nothing left to do' not in out and '[Best epoch 1, every frame]' in out
    final = read_json(final_json)
    assert (final['frames'], final['retain_every_n_frames'], final['epoch']) == (24, 1, 1)

    run_main('--config', config, '--logdir', logs, '--epochs', '1', '--resume', 'auto')
    assert 'nothing left to do' in capsys.readouterr().out


def test_default_is_every_frame_without_a_second_evaluation(tmp_path, processed_data, capsys, one_thread):
    config = write_config(tmp_path / 'plain.yaml', processed_data)
    run_main('--config', config, '--logdir', str(tmp_path / 'logs'), '--epochs', '1')
    (run_dir,) = glob.glob(str(tmp_path / 'logs' / '*@*'))
    assert read_json(os.path.join(run_dir, 'eval_epoch_001.json'))['frames'] == 24
    assert not os.path.exists(os.path.join(run_dir, 'eval_best_all_frames.json'))
    assert 'every frame]' not in capsys.readouterr().out


class FakeClock:
    """Time that passes only when the test says: 1 unit per item read, 6 per model step."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    time = perf_counter


class ClockedItems(torch.utils.data.Dataset):
    def __init__(self, clock, n):
        self.clock, self.n = clock, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.clock.now += 1
        return (np.zeros((8, 6, 3), np.uint8), np.full((1, 17, 3), 0.1 * i, np.float32),
                np.zeros((17, 2), np.float32), np.zeros((17, 2), np.float32))


class ClockedModel(torch.nn.Module):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.offset = torch.nn.Parameter(torch.zeros(3))

    def forward(self, images, keypoints_2d, keypoints_crop):
        self.clock.now += 6
        return self.offset.expand(images.shape[0], 1, 17, 3)


def test_the_data_wait_fraction_is_the_time_spent_waiting_for_batches(monkeypatch):
    from types import SimpleNamespace

    from mvn import engine
    from tests.helpers import h36m_preparer
    clock = FakeClock()
    monkeypatch.setattr(engine, 'time', SimpleNamespace(perf_counter=clock.perf_counter, time=clock.time))
    model = ClockedModel(clock)
    loader = torch.utils.data.DataLoader(ClockedItems(clock, 8), batch_size=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', crop_width=6), 1)
    # 4 batches: 2 units of reading and 6 of stepping each -> 8 of 32 units spent waiting.
    assert stats['seconds'] == 32 and stats['data_wait'] == pytest.approx(0.25)


def test_the_epoch_line_and_tensorboard_show_the_data_wait():
    from mvn.datasets.report import EvaluationReport
    from mvn.training import Trainer

    class Monitor:
        def __init__(self):
            self.lines, self.values = [], {}

        def info(self, line):
            self.lines.append(line)

        def scalars(self, values, step):
            self.values.update({(k, step): v for k, v in values.items()})

    class Report(EvaluationReport):
        epoch_columns = ('p1_mm',)

    trainer = Trainer.__new__(Trainer)
    trainer.monitor, trainer.epoch = Monitor(), 3
    stats = {'lr': 0.001, 'loss': 0.05, 'samples': 10, 'skipped': 0, 'seconds': 60.0, 'data_wait': 0.376}
    trainer.record(Report({}, {'p1_mm': 50.0}, 50.0), stats, 90.0)
    assert trainer.monitor.lines == ['[Epoch 3] time: 1.50m | lr: 0.001000 | train-loss: 50.000 | val-p1: 50.0 | '
                                     'data-wait: 38%']
    assert trainer.monitor.values[('time/data_wait_fraction', 3)] == 0.376


def batch_order(loader):
    return [tuple(int(round(10 * float(x))) for x in batch[1][:, 0, 0, 0]) for batch in loader]


def test_with_persistent_workers_a_resumed_run_shuffles_as_an_uninterrupted_one(tmp_path, processed_data):
    """A loader that ran epoch 0 and one made fresh for epoch 1 (a resumed run) give epoch 1 the
    same batches, and workers outlive the epoch."""
    from mvn.datasets.build import build_train_loader
    from mvn.training import reseed_loader, seed_epoch
    config = write_config(tmp_path / 'workers.yaml', processed_data, **{'train.num_workers': 1,
                                                                          'train.batch_size': 5})
    cfg = load_config(config)
    items = ClockedItems(FakeClock(), 24)
    running = build_train_loader(cfg, items, seed=42, pin_memory=False)
    assert running.persistent_workers and running.num_workers == 1
    orders = []
    for epoch in (0, 1):
        reseed_loader(running, epoch, seed_epoch(42, 0, epoch))
        orders.append(batch_order(running))
    workers = running._iterator._workers
    assert all(w.is_alive() for w in workers)
    resumed = build_train_loader(cfg, items, seed=42, pin_memory=False)
    reseed_loader(resumed, 1, seed_epoch(42, 0, 1))
    assert batch_order(resumed) == orders[1] != orders[0]
    assert sorted(i for batch in orders[1] for i in batch) == list(range(24))


def test_natural_backdrop_frames_are_the_size_of_human36m_frames(tmp_path):
    """The benchmark's frames: 1000x1002 JPEGs of about 100 KB (the real frames' size), unlike the
    smooth plain backdrop, and each frame with its own sensor noise."""
    from mvn.datasets.synthetic import generate_processed
    sizes = {}
    for backdrop in ('plain', 'natural'):
        root = tmp_path / backdrop
        generate_processed(str(root), str(root / 'train.pkl'), str(root / 'val.pkl'), subjects=(9,), actions=(2,),
                           subactions=(1,), cameras=(1,), frames=2, backdrop=backdrop, progress=False)
        files = sorted(root.glob('*/*.jpg'))
        sizes[backdrop] = [f.stat().st_size for f in files]
    assert all(70_000 < size < 140_000 for size in sizes['natural']), sizes
    assert max(sizes['plain']) < 0.8 * min(sizes['natural'])
    import cv2
    first, second = (cv2.imread(str(f)) for f in sorted((tmp_path / 'natural').glob('*/*.jpg')))
    assert first.shape == (1002, 1000, 3) and not np.array_equal(first, second)
    with pytest.raises(ValueError, match="backdrop must be 'plain' or 'natural', got 'fancy'"):
        generate_processed(str(tmp_path / 'x'), str(tmp_path / 'x.pkl'), str(tmp_path / 'y.pkl'), backdrop='fancy')
