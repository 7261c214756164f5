"""Train and evaluate Context-Aware PoseFormer (Human3.6M, or another dataset kind of mvn/registry.py).

One GPU (the original README's command; torchrun works the same way):
$ CUDA_VISIBLE_DEVICES=0 python -m torch.distributed.launch --nproc_per_node=1 --master_port=2345 train.py --config experiments/human36m/train/human36m_vol_softmax_single.yaml --logdir ./logs
Several GPUs on one machine (here 4):
$ CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --nproc_per_node=4 --master_port=2345 train.py --config experiments/human36m/human36m.yaml --backbone hrnet_32 --logdir ./logs
Several machines (here 2 x 8 GPUs), on every node with its own --node_rank (HOST: node 0's address):
$ torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 train.py --config experiments/human36m/human36m.yaml --logdir ./logs
or with elastic rendezvous, the same command on every node:
$ torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=capf train.py --config experiments/human36m/human36m.yaml --logdir ./logs
CPU (gloo), one process or several:
$ python train.py --config experiments/synthetic/synthetic.yaml --logdir ./logs
$ torchrun --nproc_per_node=2 train.py --config experiments/synthetic/synthetic.yaml --device cpu
Evaluate a released checkpoint (default checkpoint/best_epoch_{backbone}.bin, or --checkpoint PATH):
$ python train.py --config experiments/human36m/human36m.yaml --backbone hrnet_32 --eval

Paths on the command line are relative to the working folder; relative paths in a config file
inside the repository are relative to the repository root, in one elsewhere to its folder.
"""
import argparse
import logging
import os
import sys

import torch

from mvn import registry
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.build import build_dataset, build_eval_loader, build_train_loader, ensure_synthetic_data
from mvn.evaluator import Evaluator
from mvn.models.backbones import input_normalization
from mvn.models.build import build_model
from mvn.predictions import save_predictions
from mvn.training import Trainer, run_finished
from mvn.utils import checkpoint as ckpt
from mvn.utils import dist, signals
from mvn.utils.cfg import PATH_KEYS, REPO_ROOT, config_differences, config_to_yaml, load_config
from mvn.utils.monitor import Monitor, error_line, latest_run_dir, new_run_dir


def epoch_count(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError('must be at least 0, got %d' % value)
    return value


def positive_seconds(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError('must be more than 0 seconds, got %s' % text)
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='experiment YAML')
    parser.add_argument('--backbone', choices=list(registry.BACKBONES),
                        help="2D backbone preset (default: the config's model.backbone.type)")
    parser.add_argument('--eval', action='store_true', help='only evaluate a checkpoint')
    parser.add_argument('--eval_dataset', default='val', choices=['train', 'val'], help='split for --eval')
    parser.add_argument('--save-predictions', action='store_true',
                        help='with --eval: also write predictions.npz (mvn/predictions.py) to the run directory')
    parser.add_argument('--checkpoint', help='CA-PF checkpoint for --eval (default checkpoint/best_epoch_{backbone}.bin)')
    parser.add_argument('--resume', help="a last.pth to continue from, or 'auto' for the newest run of this config")
    parser.add_argument('--logdir', default='logs/', help='folder of the run directories')
    parser.add_argument('--seed', type=int, default=42, help='initialisation and training randomness (default 42)')
    parser.add_argument('--sync_bn', action='store_true', help='convert BatchNorm to SyncBatchNorm')
    parser.add_argument('--epochs', type=epoch_count, help='override train.n_epochs (0: set up the run, train nothing)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cuda', 'cpu'],
                        help='auto: CUDA (NCCL) when available, else the CPU (gloo)')
    parser.add_argument('--dist-timeout', type=positive_seconds, default=dist.DEFAULT_TIMEOUT, metavar='SECONDS',
                        help='several processes: how long ranks wait for each other, at the start and in every '
                             'collective, before the job ends with an error (default %(default)s)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None, help='set by the launcher')
    args = parser.parse_args(argv)
    if args.checkpoint and not args.eval:
        parser.error('--checkpoint is for --eval; to start training from a CA-PF checkpoint set model.checkpoint '
                     'in the config')
    if args.save_predictions and not args.eval:
        parser.error('--save-predictions goes with --eval')
    if args.resume and args.eval:
        parser.error('--resume continues training; to evaluate a run, pass its best_epoch.bin as --checkpoint')
    return args


def check_same_config_on_all_ranks(resolved, config_path, device):
    """Ranks whose resolved configs (YAML text) differ, file paths aside, would train differently
    and then hang in a collective: every rank stops with a LaunchError instead, before any file
    is written."""
    reference = dist.broadcast_object(resolved if dist.is_main_process() else None)
    mismatch = config_differences(reference, resolved, ignore=PATH_KEYS)
    if dist.any_rank(torch.tensor(bool(mismatch), device=device)):
        raise dist.LaunchError('rank %d resolved another config than rank 0 from %s: %s'
                               % (dist.get_rank(), config_path, '; '.join(mismatch))
                               if mismatch else 'another rank resolved another config than this one (rank 0)')


def find_run(args, run_name, monitor):
    """What ``--resume`` continues, read on rank 0 and handed to every rank (other nodes need
    not see the log folder): (last.pth contents with its 'path', or None; the run directory to
    continue, or None for a new one). ``--resume auto`` takes the newest run of this config,
    also one stopped before its first last.pth."""
    if not args.resume:
        return None, None
    found = None
    if dist.is_main_process():
        run_dir, path = None, args.resume
        if args.resume == 'auto':
            run_dir = latest_run_dir(args.logdir, run_name)
            path = run_dir and os.path.join(run_dir, 'checkpoints', ckpt.LAST_NAME)
            if run_dir is None:
                monitor.warning('--resume auto: no earlier run of %s in %s, starting afresh' % (run_name, args.logdir))
            elif not os.path.isfile(path):
                monitor.info('--resume auto: %s stopped before its first epoch ended; starting it again' % run_dir)
                path = None
        resume = dict(ckpt.load_resume_state(path), path=path) if path else None
        if resume is not None:
            run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        found = resume, run_dir
    return dist.broadcast_object(found)


def save_resolved_config(resolved, resume, monitor):
    """config.yaml (``resolved``: YAML text) of a new run. A continued run keeps its config.yaml; a
    changed config is named in a warning and saved beside it as config_resumed_epochNNN.yaml."""
    path = monitor.path('config.yaml')
    if path is None:                    # not rank 0
        return
    if not os.path.isfile(path):
        monitor.save_text('config.yaml', resolved)
        return
    with open(path) as f:
        changes = config_differences(f.read(), resolved)
    if changes:
        monitor.warning('the config differs from the resumed run\'s: %s' % '; '.join(changes))
        monitor.save_text('config_resumed_epoch%03d.yaml' % (resume['epoch'] if resume else 0), resolved)


def batch_preparer(cfg, dataset, device, **kwargs):
    """Batches of ``dataset`` prepared for the configured backbone (its input normalisation)."""
    return BatchPreparer(device, normalize=input_normalization(cfg.model.backbone.type), skeleton=dataset.skeleton,
                         crop_width=cfg.model.image_shape[0], **kwargs)


def build_evaluator(cfg, args, device, monitor, retain_every_n_frames=1):
    """The evaluation of the split to evaluate, over this rank's contiguous shard (of every n-th frame)."""
    dataset = build_dataset(cfg, args.eval_dataset if args.eval else 'val', shard=True,
                            retain_every_n_frames=retain_every_n_frames)
    loader = build_eval_loader(cfg, dataset, pin_memory=device.type == 'cuda')
    preparer = batch_preparer(cfg, dataset, device, flip_test=cfg.val.flip_test)
    return Evaluator(dataset, loader, preparer, monitor, flip_test=cfg.val.flip_test, amp=cfg.train.amp,
                     n_pictures=cfg.vis_n_elements)


def build_training_data(cfg, args, device):
    """The training loader and the batch preparation with its flips."""
    dataset = build_dataset(cfg, 'train')
    loader = build_train_loader(cfg, dataset, args.seed, pin_memory=device.type == 'cuda')
    return loader, batch_preparer(cfg, dataset, device, train=True)


def resolve_config(args, device):
    """(cfg, its YAML text, the run name) of the command line, the same on every rank."""
    cfg = load_config(args.config, backbone=args.backbone, resolve_paths=True)
    if args.epochs is not None:
        cfg.train.n_epochs = args.epochs
    resolved = config_to_yaml(cfg)
    check_same_config_on_all_ranks(resolved, args.config, device)
    run_name = ('eval_' if args.eval else '') + '%s_%s' % (
        os.path.splitext(os.path.basename(args.config))[0], cfg.model.backbone.type)
    return cfg, resolved, run_name


def load_run_model(cfg, args, device, resume):
    """(model, its CA-PF checkpoint as {'checkpoint': path, 'checkpoint_epoch': epoch} or {}):
    a resumed run's state, the checkpoint to evaluate (default: the released one for the
    backbone), model.checkpoint, or the backbone's pretrained weights."""
    default = os.path.join(REPO_ROOT, 'checkpoint', 'best_epoch_%s.bin' % cfg.model.backbone.type)
    checkpoint = (args.checkpoint or default) if args.eval else cfg.model.checkpoint
    hint = 'place the released checkpoint there or pass --checkpoint' if args.eval and not args.checkpoint else ''
    model, loaded = build_model(cfg, device, seed=args.seed, resume_state=resume, checkpoint=checkpoint,
                                checkpoint_hint=hint, sync_bn=args.sync_bn)
    if loaded is None:
        return model, {}
    return model, {'checkpoint': os.path.abspath(checkpoint),
                   'checkpoint_epoch': loaded.get('epoch') if isinstance(loaded, dict) else None}


def train(model, cfg, args, device, monitor, evaluator, training_data, resolved, resume):
    """The epochs still to train, each evaluated (see mvn.training)."""
    def evaluate_every_frame(m, epoch, **record):     # the best checkpoint, after a thinned per-epoch evaluation
        return build_evaluator(cfg, args, device, monitor)(m, epoch, 'eval_best_all_frames.json',
                                                           scalar_prefix='val_all_frames', **record)
    trainer = Trainer(model, cfg, device, seed=args.seed, monitor=monitor, config_yaml=resolved,
                      evaluate=lambda m, epoch: evaluator(m, epoch, 'eval_epoch_%03d.json' % epoch),
                      final_evaluate=evaluate_every_frame if evaluator.dataset.retain_every_n_frames > 1 else None)
    if resume is not None:
        trainer.restore(resume)
    every_n = evaluator.dataset.retain_every_n_frames
    monitor.info('training on %d frames, evaluating on %d frames%s'
                 % (len(training_data[0].dataset), evaluator.dataset.file_size,
                    ' (1 in %d; the best checkpoint on all at the end)' % every_n if every_n > 1 else ''))
    trainer.fit(*training_data, n_epochs=cfg.train.n_epochs)


def main(args):
    device, notice = dist.init_distributed(args.device, args.local_rank, timeout=args.dist_timeout)
    with Monitor(main=dist.is_main_process()) as monitor:      # files only once the run really starts
        if notice:
            monitor.info(notice)
        cfg, resolved, run_name = resolve_config(args, device)
        resume, run_dir = find_run(args, run_name, monitor)
        ensure_synthetic_data(cfg, log=monitor.info)
        model, checkpoint = load_run_model(cfg, args, device, resume)
        if resume is not None and run_finished(resume, cfg.train.n_epochs, cfg.val.retain_every_n_frames > 1):
            monitor.info('nothing left to do: %s has trained all %d epochs (raise --epochs to go on)'
                         % (resume['path'], cfg.train.n_epochs))
            return
        evaluator = build_evaluator(cfg, args, device, monitor, 1 if args.eval else cfg.val.retain_every_n_frames)
        training_data = None if args.eval else build_training_data(cfg, args, device)

        monitor.open(run_dir or (new_run_dir(args.logdir, run_name) if dist.is_main_process() else None))
        monitor.info('run directory: %s (world size %d, device %s)' % (monitor.run_dir, dist.get_world_size(), device))
        save_resolved_config(resolved, resume, monitor)
        monitor.text('config', '```\n%s```' % resolved)
        if args.eval:
            report = evaluator(model, 0, 'eval_results.json', **checkpoint)
            for line in report.table_lines() if report is not None else ():
                monitor.info(line)
            if args.save_predictions:
                save_predictions(monitor, evaluator)
        else:
            train(model, cfg, args, device, monitor, evaluator, training_data, resolved, resume)


def cli(argv=None):
    """The command: main() with one-line errors and the exit codes of a stopped run."""
    from mvn.datasets.images import DataError
    from mvn.datasets.label_cache import LabelError
    from mvn.models.weights import WeightsError
    from mvn.utils.cfg import ConfigError
    from mvn.utils.dist import LaunchError
    logging.raiseExceptions = False      # a log line that cannot be written (a full disk) prints no traceback
    handlers = signals.install()
    try:
        main(parse_args(argv))
    except (ConfigError, LabelError, DataError, WeightsError, LaunchError, OSError) as e:
        print('error: %s' % error_line(e), file=sys.stderr)
        sys.exit(1)
    except BaseException as e:           # Ctrl-C, SIGTERM (exit codes 130, 143); anything else as it is
        stop = signals.stop_code(e)
        if stop is not None:
            print(stop[0], file=sys.stderr)
            sys.exit(stop[1])
        failure = dist.collective_failure(e)
        if failure is None:
            raise
        print('error: %s' % failure, file=sys.stderr)
        sys.exit(1)
    finally:
        dist.cleanup()
        signals.restore(handlers)


if __name__ == '__main__':
    cli()
