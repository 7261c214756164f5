"""The CUDA path, where a GPU is present: side-stream prefetching from pinned memory, NCCL under
the launcher, mixed precision and SyncBatchNorm on the GPU. Every check has a CPU twin in the
other test files; these assert that CUDA gives the same batches and the same evaluation."""
import os
import re

import pytest
import torch
from torch.utils.data import DataLoader

from mvn.datasets.batch import Prefetcher
from mvn.datasets.human36m import Human36MSingleViewDataset
from tests.helpers import h36m_preparer, write_config
from tests.test_train import ENV, evaluate, run_dirs, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (the CPU twins run here)')
# cuDNN and cuBLAS round convolutions and matrix products to TF32 by default; comparisons need fp32.
FP32 = dict(ENV, NVIDIA_TF32_OVERRIDE='0')


@pytest.mark.parametrize('train_mode', [False, True])
def test_prefetched_cuda_batches_equal_the_cpu_batches(processed_data, train_mode):
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'],
                                        progress=False)
    batches = {}
    for device, loader in (('cpu', DataLoader(dataset, batch_size=5)),
                           ('cuda', DataLoader(dataset, batch_size=5, pin_memory=True, num_workers=2))):
        preparer = h36m_preparer('hrnet_32', device, train=train_mode, flip_test=not train_mode, seed=3)
        batches[device] = list(Prefetcher(loader, preparer))     # kept: each must survive the next prefetch
    assert len(batches['cpu']) == len(batches['cuda']) == -(-len(dataset) // 5)
    for cpu, cuda in zip(batches['cpu'], batches['cuda']):
        for a, b in zip(cpu, cuda):
            assert b.is_cuda and torch.equal(a, b.cpu())


@pytest.fixture(scope='module')
def cuda_run(tmp_path_factory, processed_data):
    """One epoch under the original README's launcher on one GPU (NCCL)."""
    base = tmp_path_factory.mktemp('cuda')
    config = write_config(base / 'tiny.yaml', processed_data, **{'train.n_epochs': 1})
    result = train('--config', config, '--logdir', str(base / 'logs'), nproc=1, device='cuda')
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(base / 'logs')
    return {'base': base, 'config': config, 'stdout': result.stdout,
            'checkpoint': os.path.join(run_dir, 'checkpoints', 'best_epoch.bin')}


def test_launcher_trains_with_nccl_on_the_gpu(cuda_run):
    assert 'device cuda:0' in cuda_run['stdout'] and 'gloo' not in cuda_run['stdout']
    assert re.search(r'\[Epoch 1\] time: .* val-p1: [\d.]+', cuda_run['stdout'])
    assert os.path.isfile(cuda_run['checkpoint'])


def test_cuda_evaluation_equals_the_cpu_evaluation(cuda_run):
    on_cpu, _ = evaluate(cuda_run['config'], cuda_run['checkpoint'], cuda_run['base'] / 'eval_cpu')
    on_cuda, _ = evaluate(cuda_run['config'], cuda_run['checkpoint'], cuda_run['base'] / 'eval_cuda', nproc=1,
                          device='cuda', env=FP32)
    for action, values in on_cpu['actions'].items():
        for metric in ('p1_mm', 'p2_mm', 'mpjve_mm'):     # cuDNN and CPU kernels round differently
            assert on_cuda['actions'][action][metric] == pytest.approx(values[metric], rel=1e-4), (action, metric)


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_mixed_precision_and_sync_bn_train_on_the_gpu(processed_data, tmp_path, amp):
    config = write_config(tmp_path / 'tiny.yaml', processed_data, **{'train.n_epochs': 1, 'train.amp': amp})
    result = train('--config', config, '--logdir', str(tmp_path / 'logs'), '--sync_bn', nproc=1, device='cuda')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'needs CUDA' not in result.stdout
    loss = float(re.search(r'train-loss: ([\d.]+)', result.stdout).group(1))
    assert 0 < loss < 1e4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA devices')
def test_two_gpu_evaluation_equals_one_gpu(cuda_run):
    single, _ = evaluate(cuda_run['config'], cuda_run['checkpoint'], cuda_run['base'] / 'eval1', nproc=1,
                         device='cuda', env=FP32)
    double, _ = evaluate(cuda_run['config'], cuda_run['checkpoint'], cuda_run['base'] / 'eval2', nproc=2,
                         device='cuda', env=FP32)
    for action, values in single['actions'].items():
        for metric in ('p1_mm', 'p2_mm', 'mpjve_mm'):
            assert double['actions'][action][metric] == pytest.approx(values[metric], rel=1e-5), (action, metric)
