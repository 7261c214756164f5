"""torch.distributed helpers: process-group set-up, rank queries, gathering evaluation shards.

Works under ``python -m torch.distributed.launch``, ``torchrun`` (single or multi-node) and plain
``python`` (one process, no group). NCCL on CUDA, gloo on the CPU.

Launcher faults end the job instead of hanging: ranks that wait for their peers say so after
``NOTICE_AFTER`` seconds and give up after the timeout (``--dist-timeout``, default
``DEFAULT_TIMEOUT`` seconds), which also bounds every collective, so a stopped or dead rank ends
the job; a worker whose torchrun was killed stops at once (Linux).
"""
import ctypes
import datetime
import os
import re
import signal
import socket
import sys
import threading
import time

import torch
import torch.distributed as dist
if dist.is_available():
    # Imported before any process group exists, on purpose: torch.distributed.nn binds the group
    # of the moment as a default argument of its functions (group=group.WORLD), and
    # DistributedDataParallel imports it (through torch._dynamo). Imported after
    # init_process_group, it held the group past destroy_process_group, and gloo's worker threads
    # ran on into interpreter shutdown, where one releasing the last collective's tensors needs the
    # GIL and aborts the finished run (SIGABRT, "terminate called without an active exception").
    import torch.distributed.nn  # noqa: F401

_LAUNCH_VARIABLES = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
DEFAULT_TIMEOUT = 1800      # seconds (PyTorch's own default): the rendezvous and every collective
NOTICE_AFTER = 20           # seconds a rank waits for its peers before it says so
_timeout = DEFAULT_TIMEOUT
_COLLECTIVE_FAILED = re.compile(r'gloo|NCCL|[Tt]imed out|Connection (closed|reset)')


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


def init_distributed(device_kind='auto', local_rank_arg=None, timeout=DEFAULT_TIMEOUT, log=print,
                     notice_after=NOTICE_AFTER):
    """Joins the process group if launched by a launcher. Returns (device, notice or None).

    ``device_kind``: 'auto' (CUDA when available), 'cuda' or 'cpu'. ``timeout`` (seconds) bounds
    the wait for the other ranks and every collective; after ``notice_after`` seconds of waiting,
    ``log`` gets one line saying for what.
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
    stop_with_launcher()
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
    join_group(backend, rank, world_size, timeout, log, notice_after)
    return device, notice


def join_group(backend, rank, world_size, timeout, log=print, notice_after=NOTICE_AFTER):
    """init_process_group at MASTER_ADDR:MASTER_PORT, saying once after ``notice_after`` seconds
    what this rank waits for; a LaunchError naming the address if the ranks do not all meet
    within ``timeout`` seconds."""
    global _timeout
    _timeout = timeout
    address = '%s:%s' % (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'])
    waiting = ('rank 0: waiting for %d ranks at %s (world size %d; up to --dist-timeout %g s) ...'
               % (world_size - 1, address, world_size, timeout) if rank == 0 else
               'rank %d: waiting for rank 0 at %s (up to --dist-timeout %g s) ...' % (rank, address, timeout))
    notice = threading.Timer(notice_after, lambda: log(waiting))
    notice.daemon = True
    notice.start()
    try:
        if rank != 0:
            _wait_until_listening(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']), timeout)
        dist.init_process_group(backend=backend, init_method='env://', rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, OSError) as e:       # torch's DistStoreError, DistNetworkError, ...
        raise LaunchError('rank %d: the %d ranks did not all meet at %s within --dist-timeout %g s (%s)'
                          % (rank, world_size, address, timeout, _first_line(e))) from None
    finally:
        notice.cancel()


def _wait_until_listening(host, port, timeout):
    """Waits for rank 0's store to accept connections: torch's own client logs a C++ stack trace
    for every failed attempt."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=min(5.0, timeout)).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise OSError('nothing listens there: %s' % e.strerror) from None
            time.sleep(0.5)


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return re.sub(r'^\[[^\]]*\] ', '', lines[0]) if lines else type(error).__name__


def stop_with_launcher():
    """Under torchrun, asks Linux to send this process SIGTERM when its parent, the launcher,
    dies (prctl PR_SET_PDEATHSIG): a kill -9 of torchrun would otherwise leave its workers
    training on, unsupervised. The kernel delivers it at once, with no polling thread; SIGTERM
    unwinds like scancel's. Other systems: nothing."""
    if 'TORCHELASTIC_RUN_ID' not in os.environ or not sys.platform.startswith('linux'):
        return False
    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:           # the launcher died before this process asked
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def collective_failure(error):
    """One line for a collective that failed (another rank stopped, died or lagged beyond the
    timeout), or None if ``error`` is something else."""
    if not is_distributed() or not isinstance(error, RuntimeError):
        return None
    distributed_error = getattr(dist, 'DistError', ())          # torch >= 2.2
    if not (isinstance(error, distributed_error) or _COLLECTIVE_FAILED.search(str(error))):
        return None
    return ('rank %d: a collective operation failed: %s (another rank stopped, died, or is more than --dist-timeout '
            '%g s behind)' % (get_rank(), _first_line(error), _timeout))


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
    """Leaves the process group and ends its threads before the interpreter shuts down."""
    if is_distributed():
        dist.destroy_process_group()
