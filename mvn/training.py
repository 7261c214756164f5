"""The official training schedule, resumable after every epoch.

AdamW on the head; the learning rate is multiplied by ``train.volume_net_lr_decay`` after every
epoch; every epoch ends with a full evaluation, and the best checkpoint (the report's score,
strictly lower) is kept in the official format; with a thinned per-epoch evaluation
(``val.retain_every_n_frames``), the best checkpoint is evaluated once more on every frame at the
end. Every epoch's trained state is saved (last.pth)
before it is evaluated, so a stop at any moment after an epoch's training loses at most that
evaluation, which a resumed run then does first. Every epoch reseeds its randomness from
(seed, rank, epoch), so a resumed run ends with the weights of an uninterrupted one.
"""
import math
import time

import numpy as np
import torch

from mvn import engine
from mvn.utils import checkpoint as ckpt
from mvn.utils import dist


def seed_epoch(seed, rank, epoch):
    """Seeds torch and numpy from (seed, rank, epoch); returns the value."""
    value = (seed * 1_000_003 + rank * 10_007 + epoch) % (2 ** 31)
    torch.manual_seed(value)
    np.random.seed(value)
    return value


def reseed_loader(loader, epoch, epoch_seed):
    """Makes the epoch's batch order a function of (seed, rank, epoch) alone: DistributedSampler
    by its epoch, a shuffling sampler by its own generator. (Not the loader's generator: with
    persistent workers the loader draws from it only when its workers start, so a resumed run
    would shuffle differently from an uninterrupted one.)"""
    if hasattr(loader.sampler, 'set_epoch'):
        loader.sampler.set_epoch(epoch)
    elif getattr(loader.sampler, 'generator', None) is not None:
        loader.sampler.generator.manual_seed(epoch_seed)


def run_finished(state, n_epochs, thinned_validation):
    """True when the run of ``state`` (a last.pth's contents) has trained and evaluated all
    ``n_epochs`` and, with ``thinned_validation``, evaluated its best checkpoint on every frame."""
    final_outstanding = thinned_validation and not state.get('final_evaluated')
    return state['epoch'] >= n_epochs and not state.get('pending') and not final_outstanding


class Trainer:
    """Trains ``model``'s head for ``cfg.train``; ``evaluate(model, epoch)`` returns the
    evaluation report on rank 0 (None elsewhere); ``config_yaml`` goes into every last.pth.
    ``final_evaluate(model, epoch, checkpoint=path)``, if given, evaluates the best checkpoint's
    weights (loaded into ``model``) once training is done, likewise returning the report."""

    def __init__(self, model, cfg, device, *, seed, monitor, evaluate, config_yaml, final_evaluate=None):
        self.model, self.cfg, self.device, self.seed = model, cfg, device, seed
        self.monitor, self.evaluate, self.config_yaml = monitor, evaluate, config_yaml
        self.final_evaluate = final_evaluate
        head = [p for p in model.volume_net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW([{'params': head, 'lr': cfg.train.volume_net_lr}],
                                           weight_decay=cfg.train.weight_decay)
        self.scaler = engine.make_grad_scaler(cfg.train.amp, device)
        self.epoch = 0                      # epochs trained
        self.lr = cfg.train.volume_net_lr   # the rate of the next epoch
        self.best_score = math.inf          # the best evaluation's score (rank 0)
        self.pending = None                 # training figures of the last epoch while it awaits evaluation
        self.final_evaluated = False        # final_evaluate has run on the best of the epochs trained
        self.last_report = None

    def restore(self, resume):
        """Continues from a last.pth's contents (``resume``, with its 'path')."""
        self.optimizer.load_state_dict(resume['optimizer'])
        if self.scaler is not None and resume.get('scaler'):
            self.scaler.load_state_dict(resume['scaler'])
        self.epoch, self.lr, self.best_score = resume['epoch'], resume['lr'], resume['best_p1']
        self.pending = resume.get('pending')
        self.final_evaluated = resume.get('final_evaluated', False)
        if resume['seed'] != self.seed:
            self.monitor.warning('resuming a run made with --seed %d under --seed %d' % (resume['seed'], self.seed))
        self.monitor.info('resumed from %s: epoch %d done, lr %.6g, best %s'
                          % (resume['path'], self.epoch, self.lr, self.describe_best()))

    def describe_best(self):
        return '%.1f' % self.best_score if math.isfinite(self.best_score) else 'none yet'

    def fit(self, loader, preparer, n_epochs):
        """Trains epochs ``self.epoch + 1 .. n_epochs`` on ``loader`` (batches through ``preparer``)."""
        ddp_model = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device] if self.device.type == 'cuda' else None)
            if dist.is_distributed() else self.model)
        if self.pending is not None:
            self.monitor.info('epoch %d was trained but not evaluated when the run stopped: evaluating it now'
                              % self.epoch)
            self.finish_epoch()
        while self.epoch < n_epochs:
            self.pending = self.train_epoch(ddp_model, loader, preparer)
            self.epoch += 1
            self.final_evaluated = False
            self.lr *= self.cfg.train.volume_net_lr_decay
            self.save_last()            # the trained state first: a stop from here on loses only the evaluation
            self.finish_epoch()
        if not math.isfinite(self.best_score):
            self.monitor.info('done; no epoch was evaluated')
        else:
            best = (self.last_report.describe_score(self.best_score) if self.last_report is not None
                    else 'score %.1f' % self.best_score)
            self.monitor.info('done; best %s' % best)
        if self.final_evaluate is not None and not self.final_evaluated:
            self.evaluate_best()
            self.final_evaluated = True
            self.save_last()            # a resumed run then has nothing left to do

    def train_epoch(self, ddp_model, loader, preparer):
        epoch_seed = seed_epoch(self.seed, dist.get_rank(), self.epoch)
        preparer.generator.manual_seed(epoch_seed)
        reseed_loader(loader, self.epoch, epoch_seed)
        for group in self.optimizer.param_groups:
            group['lr'] = self.lr
        train = self.cfg.train
        stats = engine.train_one_epoch(ddp_model, self.optimizer, loader, preparer, self.epoch + 1,
                                       grad_clip=self.cfg.loss.grad_clip, base_lr=train.volume_net_lr, amp=train.amp,
                                       scaler=self.scaler, writer=self.monitor.writer,
                                       global_step=self.epoch * len(loader))
        return {'lr': self.lr, 'loss': stats['loss'], 'samples': stats['samples'], 'skipped': stats['skipped'],
                'seconds': stats['seconds'], 'data_wait': stats['data_wait']}

    def finish_epoch(self):
        """Evaluates the epoch just trained, records it (rank 0), keeps the best checkpoint."""
        started = time.time()
        report = self.evaluate(self.model, self.epoch)
        if report is not None:
            self.last_report = report
            self.record(report, self.pending, self.pending['seconds'] + time.time() - started)
            if report.score < self.best_score:
                self.best_score = report.score
                path = self.monitor.path('checkpoints', ckpt.BEST_NAME)
                ckpt.save_best(path, self.epoch, self.pending['lr'], self.model, self.optimizer)
                self.monitor.info('  --> new best model, saved to %s' % path)
        self.pending = None
        self.save_last()
        dist.barrier()

    def evaluate_best(self):
        """Runs ``final_evaluate`` on the best checkpoint (read on rank 0, sent to every rank); the
        model holds the last epoch's weights again afterwards (last.pth keeps them). Nothing if no
        epoch was evaluated."""
        best = None
        if dist.is_main_process() and math.isfinite(self.best_score):
            path = self.monitor.path('checkpoints', ckpt.BEST_NAME)
            saved = ckpt.read_weights(path, 'best checkpoint')
            best = {'path': path, 'epoch': saved['epoch'], 'model': saved['model']}
        best = dist.broadcast_object(best)
        if best is None:
            return
        prefix = len(ckpt.DDP_PREFIX)
        last = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict({k[prefix:]: v for k, v in best['model'].items()})
        report = self.final_evaluate(self.model, best['epoch'], checkpoint=best['path'])
        self.model.load_state_dict(last)
        if report is not None:
            self.monitor.info('[Best epoch %d, every frame] %s' % (best['epoch'], report.epoch_text()))
        dist.barrier()

    def record(self, report, stats, seconds):
        monitor = self.monitor
        data_wait = stats.get('data_wait')         # absent from a last.pth of an older version
        monitor.info('[Epoch %d] time: %.2fm | lr: %.6f | train-loss: %.3f | %s%s'
                     % (self.epoch, seconds / 60, stats['lr'], 1000 * stats['loss'], report.epoch_text(),
                        '' if data_wait is None else ' | data-wait: %.0f%%' % (100 * data_wait)))
        if stats['skipped']:
            monitor.warning('%d step(s) skipped for a NaN loss' % stats['skipped'])
        monitor.scalars({'train/loss_epoch': 1000 * stats['loss'], 'time/epoch_s': seconds,
                         'time/train_samples_per_s': stats['samples'] / max(stats['seconds'], 1e-9),
                         'train/lr_epoch': stats['lr']}, self.epoch)
        if data_wait is not None:
            monitor.scalars({'time/data_wait_fraction': data_wait}, self.epoch)

    def save_last(self):
        if dist.is_main_process():
            ckpt.save_last(self.monitor.path('checkpoints', ckpt.LAST_NAME), self.epoch, self.lr, self.best_score,
                           self.model, self.optimizer, self.config_yaml, self.seed, self.scaler, pending=self.pending,
                           final_evaluated=self.final_evaluated)
