"""Train and evaluate Context-Aware PoseFormer on Human3.6M.

Single GPU (the original README's command; torchrun works the same way):
    CUDA_VISIBLE_DEVICES=0 python -m torch.distributed.launch --nproc_per_node=1 --master_port=2345 train.py \
        --config experiments/human36m/train/human36m_vol_softmax_single.yaml --logdir ./logs
Several GPUs on one machine (here 4):
    CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --nproc_per_node=4 --master_port=2345 train.py \
        --config experiments/human36m/human36m.yaml --backbone hrnet_32 --logdir ./logs
Several machines (here 2 x 8 GPUs), on every node with its own --node_rank (HOST: node 0's address):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 train.py \
        --config experiments/human36m/human36m.yaml --logdir ./logs
  or with elastic rendezvous, the same command on every node:
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=capf \
        train.py --config experiments/human36m/human36m.yaml --logdir ./logs
CPU (gloo), one process or several:
    python train.py --config experiments/synthetic/synthetic.yaml --logdir ./logs
    torchrun --nproc_per_node=2 train.py --config experiments/synthetic/synthetic.yaml --device cpu
Evaluate a released checkpoint (default checkpoint/best_epoch_{backbone}.bin, or --checkpoint PATH):
    python train.py --config experiments/human36m/human36m.yaml --backbone hrnet_32 --eval
"""
import argparse
import math
import os
import signal
import sys
import time

import numpy as np
import torch

from mvn import engine
from mvn.datasets.build import (build_dataset, build_eval_loader, build_train_loader, ensure_synthetic_data)
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.evaluation import format_table, summarize
from mvn.models.conpose import CA_PF
from mvn.models.weights import load_checked, load_coco_backbone, load_model_checkpoint
from mvn.utils import checkpoint as ckpt
from mvn.utils import dist
from mvn.utils.cfg import PATH_KEYS, config_differences, config_to_yaml, load_config
from mvn.utils.monitor import Monitor, error_line, new_run_dir
from mvn.utils.vis import pose_comparison


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--config', required=True, help='experiment YAML')
    parser.add_argument('--backbone', choices=['hrnet_32', 'hrnet_48', 'cpn', 'hrnet_tiny'],
                        help="2D backbone preset (default: the config's model.backbone.type)")
    parser.add_argument('--eval', action='store_true', help='only evaluate a checkpoint')
    parser.add_argument('--eval_dataset', default='val', choices=['train', 'val'], help='split for --eval')
    parser.add_argument('--checkpoint', help='CA-PF checkpoint for --eval (default checkpoint/best_epoch_{backbone}.bin)')
    parser.add_argument('--resume', help="a last.pth to continue from, or 'auto' for the newest run of this config")
    parser.add_argument('--logdir', default='logs/', help='folder of the run directories')
    parser.add_argument('--seed', type=int, default=42, help='initialisation and training randomness (default 42)')
    parser.add_argument('--sync_bn', action='store_true', help='convert BatchNorm to SyncBatchNorm')
    parser.add_argument('--epochs', type=int, help='override train.n_epochs')
    parser.add_argument('--device', default='auto', choices=['auto', 'cuda', 'cpu'],
                        help='auto: CUDA (NCCL) when available, else the CPU (gloo)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None, help='set by the launcher')
    parser.add_argument('--azureroot', default='', help=argparse.SUPPRESS)   # official flag, no effect here
    parser.add_argument('--frame', type=int, default=1, choices=[1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.checkpoint and not args.eval:
        parser.error('--checkpoint is for --eval; to start training from a CA-PF checkpoint set model.checkpoint '
                     'in the config')
    if args.resume and args.eval:
        parser.error('--resume continues training; to evaluate a run, pass its best_epoch.bin as --checkpoint')
    return args


def seed_epoch(seed, rank, epoch):
    """Training randomness (sampling order, flips, stochastic depth) depends only on
    (seed, rank, epoch), so a resumed run continues exactly as an uninterrupted one."""
    value = (seed * 1_000_003 + rank * 10_007 + epoch) % (2 ** 31)
    torch.manual_seed(value)
    np.random.seed(value)
    return value


def build_model(cfg, args, device, monitor, resume=None):
    """CA_PF on ``device``: the resumed state if given, else the evaluated or configured CA-PF
    checkpoint, else COCO backbone weights (``model.backbone.init_weights``) and a fresh head."""
    torch.manual_seed(args.seed)            # the official initialisation for a given seed
    model = CA_PF(cfg)
    backbone_cfg = cfg.model.backbone
    weights = (args.checkpoint or 'checkpoint/best_epoch_%s.bin' % backbone_cfg.type) if args.eval \
        else cfg.model.checkpoint
    # A CA-PF checkpoint holds the backbone too (it loads strictly), so no COCO file is needed then.
    if resume is not None:
        load_checked(model, resume['model'], resume['path'])
    elif weights:
        load_model_checkpoint(model, weights, hint='place the released checkpoint there or pass --checkpoint'
                              if args.eval and not args.checkpoint else '')
        monitor.info('loaded CA-PF weights from %s' % weights)
    elif backbone_cfg.init_weights:
        load_coco_backbone(model.backbone, backbone_cfg.type, backbone_cfg.checkpoint)
        monitor.info('loaded %s weights from %s' % (backbone_cfg.type, backbone_cfg.checkpoint))
    elif backbone_cfg.checkpoint:
        monitor.warning('model.backbone.init_weights is false: the %s backbone is randomly initialised'
                        % backbone_cfg.type)
    if args.sync_bn and device.type == 'cuda':
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif args.sync_bn:
        monitor.warning('--sync_bn needs CUDA; ignored (a frozen backbone keeps its statistics anyway)')
    model.to(device)
    monitor.info('parameters: backbone %d, head %d' % (sum(p.numel() for p in model.backbone.parameters()),
                                                         sum(p.numel() for p in model.volume_net.parameters())))
    return model


def save_resolved_config(resolved, resume, monitor):
    """config.yaml (``resolved``: YAML text) of a new run. A resumed run keeps its config.yaml; a
    changed config is named in a warning and saved beside it as config_resumed_epochNNN.yaml."""
    if resume is None:
        monitor.save_text('config.yaml', resolved)
        return
    changes = config_differences(resume['config'], resolved)
    if changes:
        monitor.warning('the config differs from the resumed run\'s: %s' % '; '.join(changes))
        monitor.save_text('config_resumed_epoch%03d.yaml' % resume['epoch'], resolved)


def run_evaluation(model, cfg, args, device, dataset, loader, monitor, epoch):
    preparer = BatchPreparer(cfg.model.backbone.type, device, flip_test=cfg.val.flip_test,
                             crop_width=cfg.model.image_shape[0])
    results, predictions = engine.evaluate(model, loader, preparer, dataset, flip_test=cfg.val.flip_test,
                                           amp=cfg.train.amp)
    if results is None:
        return None
    summary = summarize(results)
    monitor.save_json('eval_epoch_%03d.json' % epoch if not args.eval else 'eval_results.json',
                      {'epoch': epoch, 'labels': dataset.labels_path, 'average_mm': summary,
                       'actions_m': results})
    monitor.scalars({'val/p1': summary['p1'], 'val/p2': summary['p2'], 'val/mpjve': summary['mpjve']}, epoch)
    for tag, metric in (('p1', 'MPJPE'), ('p2', 'P_MPJPE'), ('mpjve', 'MPJVE')):
        monitor.scalars({'val_actions/%s_%s' % (tag, name): 1000 * r[metric] for name, r in results.items()}, epoch)
    if monitor.writer and cfg.vis_n_elements > 0:
        full = build_dataset(cfg, 'train' if args.eval and args.eval_dataset == 'train' else 'val')
        picks = np.linspace(0, len(full) - 1, min(cfg.vis_n_elements, len(full))).astype(int)
        gt = full.labels['joints_3d']
        pictures = []
        for i in picks:
            crop, _, _, keypoints_crop = full[i]
            target = np.asarray(gt[i]) - np.asarray(gt[i][0])
            pictures.append(pose_comparison(crop, keypoints_crop, predictions[i, 0].numpy(), target))
        monitor.images('val/poses', pictures, epoch)
    return results, summary


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


def main(args):
    device, notice = dist.init_distributed(args.device, args.local_rank)
    main_process = dist.is_main_process()
    cfg = load_config(args.config, backbone=args.backbone)
    if args.epochs is not None:
        cfg.train.n_epochs = args.epochs
    resolved = config_to_yaml(cfg)
    check_same_config_on_all_ranks(resolved, args.config, device)
    run_name = ('eval_' if args.eval else '') + '%s_%s' % (os.path.splitext(os.path.basename(args.config))[0],
                                                          cfg.model.backbone.type)

    resume = None
    if args.resume and main_process:
        path = ckpt.find_latest_run(args.logdir, run_name) if args.resume == 'auto' else args.resume
        resume = dict(ckpt.load_resume_state(path), path=path) if path else None
    if args.resume:   # from rank 0: other nodes need not share its filesystem
        resume = dist.broadcast_object(resume)
    if resume is not None:
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(resume['path'])))
    else:
        run_dir = dist.broadcast_object(new_run_dir(args.logdir, run_name) if main_process else None)

    with Monitor(run_dir, main=main_process) as monitor:
        if notice:
            monitor.info(notice)
        if args.resume == 'auto' and resume is None:
            monitor.warning('--resume auto: no earlier run of %s in %s, starting afresh' % (run_name, args.logdir))
        monitor.info('run directory: %s (world size %d, device %s)' % (run_dir, dist.get_world_size(), device))
        ensure_synthetic_data(cfg, log=monitor.info)
        model = build_model(cfg, args, device, monitor, resume)
        save_resolved_config(resolved, resume, monitor)     # once the weights fit the config
        monitor.text('config', '```\n%s```' % resolved)
        val_dataset = build_dataset(cfg, args.eval_dataset if args.eval else 'val', shard=True)
        val_loader = build_eval_loader(cfg, val_dataset, pin_memory=device.type == 'cuda')
        if args.eval:
            evaluation = run_evaluation(model, cfg, args, device, val_dataset, val_loader, monitor, 0)
            if evaluation is not None:
                for line in format_table(evaluation[0]):
                    monitor.info(line)
        else:
            train(model, cfg, resolved, args, device, resume, val_dataset, val_loader, monitor)


def train(model, cfg, resolved, args, device, resume, val_dataset, val_loader, monitor):
    """The official schedule: AdamW on the head, evaluation every epoch, lr decay per epoch.
    ``resolved``: the config as YAML text, stored in every last.pth."""
    head_parameters = [p for p in model.volume_net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{'params': head_parameters, 'lr': cfg.train.volume_net_lr}],
                                  weight_decay=cfg.train.weight_decay)
    scaler = engine.make_grad_scaler(cfg.train.amp, device)
    start_epoch, lr, best_p1 = 0, cfg.train.volume_net_lr, math.inf
    if resume is not None:
        optimizer.load_state_dict(resume['optimizer'])
        if scaler is not None and resume.get('scaler'):
            scaler.load_state_dict(resume['scaler'])
        start_epoch, lr, best_p1 = resume['epoch'], resume['lr'], resume['best_p1']
        if resume['seed'] != args.seed:
            monitor.warning('resuming a run made with --seed %d under --seed %d' % (resume['seed'], args.seed))
        monitor.info('resumed from %s: epoch %d done, lr %.6g, best p1 %s' % (resume['path'], start_epoch, lr, best_p1))
    for group in optimizer.param_groups:
        group['lr'] = lr

    train_dataset = build_dataset(cfg, 'train')
    train_loader = build_train_loader(cfg, train_dataset, args.seed, pin_memory=device.type == 'cuda')
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None)
                 if dist.is_distributed() else model)
    preparer = BatchPreparer(cfg.model.backbone.type, device, train=True, crop_width=cfg.model.image_shape[0])
    monitor.info('training on %d frames, evaluating on %d frames' % (len(train_dataset), len(val_dataset.action)))
    global_step = start_epoch * len(train_loader)

    for epoch in range(start_epoch, cfg.train.n_epochs):
        epoch_seed = seed_epoch(args.seed, dist.get_rank(), epoch)
        preparer.generator.manual_seed(epoch_seed)
        if hasattr(train_loader.sampler, 'set_epoch'):
            train_loader.sampler.set_epoch(epoch)
        else:
            train_loader.generator.manual_seed(epoch_seed)
        started = time.time()
        stats = engine.train_one_epoch(ddp_model, optimizer, train_loader, preparer, epoch + 1,
                                       grad_clip=cfg.loss.grad_clip, base_lr=cfg.train.volume_net_lr,
                                       amp=cfg.train.amp, scaler=scaler, writer=monitor.writer,
                                       global_step=global_step)
        global_step = stats['global_step']
        evaluation = run_evaluation(model, cfg, args, device, val_dataset, val_loader, monitor, epoch + 1)
        if evaluation is not None:
            summary = evaluation[1]
            mean_p1, mean_p2 = round(summary['p1'], 1), round(summary['p2'], 1)
            minutes = (time.time() - started) / 60
            monitor.info('[Epoch %d] time: %.2fm | lr: %.6f | train-loss: %.3f | val-p1: %.1f | val-p2: %.1f'
                         % (epoch + 1, minutes, lr, 1000 * stats['loss'], mean_p1, mean_p2))
            if stats['skipped']:
                monitor.warning('%d step(s) skipped for a NaN loss' % stats['skipped'])
            monitor.scalars({'train/loss_epoch': 1000 * stats['loss'], 'time/epoch_s': 60 * minutes,
                             'time/train_samples_per_s': stats['samples'] / max(stats['seconds'], 1e-9),
                             'train/lr_epoch': lr}, epoch + 1)
            if mean_p1 < best_p1:
                best_p1 = mean_p1
                path = monitor.path('checkpoints', ckpt.BEST_NAME)
                ckpt.save_best(path, epoch + 1, lr, model, optimizer)
                monitor.info('  --> new best model, saved to %s' % path)
        lr *= cfg.train.volume_net_lr_decay
        for group in optimizer.param_groups:
            group['lr'] = lr
        if dist.is_main_process():
            ckpt.save_last(monitor.path('checkpoints', ckpt.LAST_NAME), epoch + 1, lr, best_p1, model, optimizer,
                           resolved, args.seed, scaler)
        dist.barrier()
    monitor.info('done; best average P1 %.1f mm' % best_p1)


class Terminated(BaseException):
    """SIGTERM (scancel, a launcher stopping the job): unwinds like Ctrl-C, so the run's files are closed."""


def _on_sigterm(signum, frame, main_pid=os.getpid()):
    if os.getpid() != main_pid:           # a forked loader worker: end as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated()


if __name__ == '__main__':
    from mvn.datasets.human36m import DataError
    from mvn.datasets.label_cache import LabelError
    from mvn.models.weights import WeightsError
    from mvn.utils.cfg import ConfigError
    from mvn.utils.dist import LaunchError
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        main(parse_args())
    except (ConfigError, LabelError, DataError, WeightsError, LaunchError, OSError) as e:
        print('error: %s' % error_line(e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print('terminated', file=sys.stderr)
        sys.exit(143)
    finally:
        dist.cleanup()
