"""torch.distributed helpers: process-group set-up, rank queries, gathering evaluation shards.

Works under ``python -m torch.distributed.launch``, ``torchrun`` (single or multi-node) and plain
``python`` (one process, no group). NCCL on CUDA, gloo on the CPU.
"""
import datetime
import os

import torch
import torch.distributed as dist

_LAUNCH_VARIABLES = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


class LaunchError(RuntimeError):
    """The launcher's environment is inconsistent; the message says which variable."""


def launch_environment(local_rank_arg=None):
    """(rank, world_size, local_rank) from the launcher's variables, or None for a plain run.

    Any of RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT without the others is an error rather
    than a rendezvous that waits forever.
    """
    present = [v for v in _LAUNCH_VARIABLES if os.environ.get(v)]
    if not present:
        if local_rank_arg not in (None, 0):
            raise LaunchError('--local_rank=%s was given but no launcher variables (RANK, WORLD_SIZE, '
                              'MASTER_ADDR, MASTER_PORT) are set; start with torchrun' % local_rank_arg)
        return None
    missing = [v for v in _LAUNCH_VARIABLES if v not in present]
    if missing:
        raise LaunchError('%s set but %s missing: start with torchrun or python -m torch.distributed.launch, '
                          'or unset them for a single process' % (', '.join(present), ', '.join(missing)))
    try:
        rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
        local_rank = int(os.environ.get('LOCAL_RANK', local_rank_arg if local_rank_arg is not None else rank))
    except ValueError as e:
        raise LaunchError('launcher variable is not an integer: %s' % e) from None
    if not 0 <= rank < world_size:
        raise LaunchError('RANK=%d is outside WORLD_SIZE=%d' % (rank, world_size))
    return rank, world_size, local_rank


def init_distributed(device_kind='auto', local_rank_arg=None, timeout_minutes=30):
    """Joins the process group if launched by a launcher. Returns (device, notice or None).

    ``device_kind``: 'auto' (CUDA when available), 'cuda' or 'cpu'.
    """
    env = launch_environment(local_rank_arg)
    use_cuda = torch.cuda.is_available() if device_kind == 'auto' else device_kind == 'cuda'
    if use_cuda and not torch.cuda.is_available():
        raise LaunchError('--device cuda was asked for but CUDA is not available')
    notice = None
    if env is None:
        device = torch.device('cuda', 0) if use_cuda else torch.device('cpu')
        tasks = os.environ.get('SLURM_NTASKS', '1')
        if 'SLURM_STEP_ID' in os.environ and tasks.isdigit() and int(tasks) > 1:
            notice = ('warning: srun started %s tasks, but without a launcher each trains alone; start one task '
                      'per node that runs torchrun (see the README)' % tasks)
        return device, notice
    rank, world_size, local_rank = env
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise LaunchError('LOCAL_RANK=%d but only %d CUDA device(s) are visible'
                              % (local_rank, torch.cuda.device_count()))
        torch.cuda.set_device(local_rank)
        device, backend = torch.device('cuda', local_rank), 'nccl'
    else:
        device, backend = torch.device('cpu'), 'gloo'
        notice = 'CUDA is not available: running on the CPU with the gloo backend'
    dist.init_process_group(backend=backend, init_method='env://', rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    return device, notice


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values, device):
    """Sum of a list of floats over all ranks (float64)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag):
    """True on every rank if the boolean tensor ``flag`` is true on any rank."""
    if not is_distributed():
        return bool(flag)
    value = flag.detach().to(torch.int32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj, src=0):
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_shards(tensor, sizes):
    """Concatenates every rank's (n_r, ...) tensor in rank order; ``sizes`` = [n_0, n_1, ...].

    Shards are padded to the largest size for all_gather (NCCL needs equal shapes) and trimmed.
    Returns the full tensor on every rank.
    """
    if not is_distributed():
        return tensor
    if tensor.shape[0] != sizes[get_rank()]:
        raise ValueError('rank %d holds %d items, expected %d' % (get_rank(), tensor.shape[0], sizes[get_rank()]))
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    buffers = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buffers, padded)
    return torch.cat([b[:n] for b, n in zip(buffers, sizes)], dim=0)


def cleanup():
    if is_distributed():
        dist.destroy_process_group()
