"""Helpers shared by the tests."""
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess

import yaml

from mvn.datasets.batch import BatchPreparer
from mvn.datasets.h36m_meta import SKELETON
from mvn.models.backbones import input_normalization

# A dataset small enough for seconds-long tests: 2 subjects (S1 train, S9 test), 2 actions.
SMALL = dict(subjects=(1, 9), actions=(2, 3), subactions=(1, 2), cameras=(1, 2), frames=3, seed=0)


def write_config(path, data_paths, **overrides):
    """A tiny experiment YAML over ``data_paths`` (from processed_data); returns its path."""
    tree = {
        'title': 'test',
        'model': {'backbone': {'type': 'hrnet_tiny'},
                  'poseformer': {'embed_dim_ratio': 16, 'depth': 2, 'drop_path_rate': 0.1}},
        'dataset': {'root': data_paths['root'], 'train_labels_path': data_paths['train'],
                    'val_labels_path': data_paths['val']},
        'train': {'n_epochs': 2, 'batch_size': 8, 'volume_net_lr': 0.001, 'num_workers': 0},
        'val': {'batch_size': 10, 'num_workers': 0},
        'vis_n_elements': 2,
    }
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split('.')
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    with open(path, 'w') as f:
        yaml.safe_dump(tree, f)
    return str(path)


def free_port():
    """A TCP port that no socket of this machine holds, on any address (for a process group's
    rendezvous): torchrun's store listens on all addresses, so a port that is only free on
    127.0.0.1 may still be refused."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_INET6) as s:      # dual stack: free for IPv4 and IPv6 alike
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(('::', 0))
            return str(s.getsockname()[1])
    with socket.socket() as s:
        s.bind(('', 0))
        return str(s.getsockname()[1])


def run_together(commands, cwds, env, timeout):
    """Starts every command at once (each in its own session, in its folder) and collects them:
    [CompletedProcess] with text stdout and stderr. Every process's pipes are read while all
    run: a process whose output filled an unread pipe would stop, and with it every process
    that waits for it in a collective, until the timeout. Whatever is left when one fails or
    times out is killed, with its children; a timeout fails the test with the end of what each
    process printed, so a hang can be told apart from a crash."""
    processes = [subprocess.Popen(command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
                 for command, cwd in zip(commands, cwds)]
    timed_out = False
    try:
        with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
            futures = [pool.submit(p.communicate, timeout=timeout) for p in processes]
            concurrent.futures.wait(futures)
            timed_out = any(isinstance(f.exception(), subprocess.TimeoutExpired) for f in futures)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    if timed_out:               # the pipes close with the killed processes: read what is left
        outputs = [p.communicate() for p in processes]
        raise AssertionError('timed out after %d s; what each process printed last:\n%s' % (timeout, '\n'.join(
            '--- process %d (exit %s):\n%s\n%s' % (i, p.returncode, out[-2000:], err[-2000:])
            for i, (p, (out, err)) in enumerate(zip(processes, outputs)))))
    outputs = [f.result() for f in futures]
    return [subprocess.CompletedProcess(p.args, p.returncode, *output) for p, output in zip(processes, outputs)]


def h36m_preparer(backbone, device, crop_width=192, **kwargs):
    """BatchPreparer of Human3.6M batches for ``backbone`` (as train.py builds it)."""
    return BatchPreparer(device, normalize=input_normalization(backbone), skeleton=SKELETON, crop_width=crop_width,
                         **kwargs)


def run_main(*argv):
    """train.py's main() in this process, on the CPU."""
    import train
    train.main(train.parse_args([*argv, '--device', 'cpu']))
