"""The launch environment: which variables make a distributed run, and the errors and notices."""
import pytest
import torch

from mvn.utils.dist import LaunchError, init_distributed, launch_environment

LAUNCH = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'LOCAL_RANK', 'SLURM_NTASKS', 'SLURM_STEP_ID')


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_run_has_no_launch_environment(env):
    assert launch_environment() is None and launch_environment(0) is None
    with pytest.raises(LaunchError, match='--local_rank=1 was given but no launcher variables'):
        launch_environment(1)


def test_the_launchers_variables_give_rank_world_size_and_local_rank(env):
    for name, value in (('RANK', '3'), ('WORLD_SIZE', '4'), ('MASTER_ADDR', '10.0.0.1'), ('MASTER_PORT', '2345')):
        env.setenv(name, value)
    assert launch_environment(1) == (3, 4, 1)             # torch.distributed.launch's --local-rank
    env.setenv('LOCAL_RANK', '2')
    assert launch_environment(1) == (3, 4, 2)             # torchrun's LOCAL_RANK wins
    env.setenv('RANK', '4')
    with pytest.raises(LaunchError, match='RANK=4 is outside WORLD_SIZE=4'):
        launch_environment()
    env.setenv('RANK', 'zero')
    with pytest.raises(LaunchError, match='not an integer'):
        launch_environment()


def test_half_a_launch_environment_names_what_is_missing(env):
    env.setenv('WORLD_SIZE', '2')
    with pytest.raises(LaunchError, match='^WORLD_SIZE set but RANK, MASTER_ADDR, MASTER_PORT missing'):
        launch_environment()


def test_tasks_started_by_srun_without_a_launcher_are_warned_about(env):
    assert init_distributed('cpu') == (torch.device('cpu'), None)
    env.setenv('SLURM_NTASKS', '4')
    assert init_distributed('cpu')[1] is None             # a batch script, not an srun step
    env.setenv('SLURM_STEP_ID', '0')
    device, notice = init_distributed('cpu')
    assert device == torch.device('cpu') and notice.startswith('warning: srun started 4 tasks')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error on a machine without CUDA')
def test_asking_for_cuda_without_it_is_an_error(env):
    with pytest.raises(LaunchError, match='--device cuda was asked for but CUDA is not available'):
        init_distributed('cuda')
