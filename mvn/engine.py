"""One training epoch and one evaluation pass. No argument parsing, no globals."""
import contextlib
import math
import time

import torch
from tqdm import tqdm

from mvn.datasets.batch import Prefetcher
from mvn.models.loss import mpjpe
from mvn.utils import dist
from mvn.utils.cfg import ConfigError

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def autocast_context(amp, device):
    """Autocast for 'bf16'/'fp16'; for 'off' no context at all, so fp32 runs are untouched."""
    if amp == 'off':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def make_grad_scaler(amp, device):
    """The loss scaler fp16 training needs, or None. torch < 2.3 has only the CUDA scaler and
    no fp16 autocast on the CPU."""
    if amp != 'fp16':
        return None
    if hasattr(torch.amp, 'GradScaler'):
        return torch.amp.GradScaler(device.type)
    if device.type != 'cuda':
        raise ConfigError("train.amp 'fp16' on the CPU needs torch >= 2.3 (this is %s); use 'bf16'"
                          % torch.__version__)
    return torch.cuda.amp.GradScaler()


def train_one_epoch(model, optimizer, loader, preparer, epoch, *, grad_clip=0.0, base_lr=None, amp='off',
                    scaler=None, writer=None, global_step=0):
    """Trains the head for one pass over ``loader``.

    Loss: MPJPE in metres over all joints (shown and plotted in mm). A batch whose loss is NaN on
    any rank is skipped (no step).
    ``grad_clip`` > 0 clips the gradient norm at grad_clip / base_lr (the configured initial rate).
    Returns {'loss': sample-weighted mean loss over all ranks (metres), 'samples', 'skipped',
    'seconds', 'global_step', 'data_wait': the fraction of the epoch this loop spent waiting for
    its next batch (mean over ranks; near 1: the run is loader-bound)}.
    """
    model.train()
    device = preparer.device
    main = dist.is_main_process()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    samples = skipped = 0
    waited = 0.0
    start = time.time()
    # Closed on any exit, so that an error message starts on a line of its own.
    with tqdm(Prefetcher(loader, preparer), desc='train epoch %d' % epoch, disable=not main,
              dynamic_ncols=True, mininterval=1.0) as progress:
        # Every step synchronises with the device (the NaN check below), so the time spent in
        # next() is time the device had nothing to do for want of data.
        asked = time.perf_counter()
        for images, joints_3d, keypoints_2d, keypoints_crop in progress:
            waited += time.perf_counter() - asked
            with autocast_context(amp, device):
                pred = model(images, keypoints_2d, keypoints_crop)
            loss = mpjpe(pred.float(), joints_3d)
            optimizer.zero_grad(set_to_none=True)
            # Decided together: a rank that skipped its backward alone would leave the others
            # waiting in DistributedDataParallel's gradient all-reduce.
            if dist.any_rank(torch.isnan(loss)):
                skipped += 1
                asked = time.perf_counter()
                continue
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip / base_lr)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()

            loss_sum += loss.detach().double() * joints_3d.shape[0]
            samples += joints_3d.shape[0]
            global_step += 1
            if main:
                loss_mm = 1000 * loss.item()
                progress.set_postfix(loss='%.2f mm' % loss_mm)
                if writer is not None:
                    writer.add_scalar('train/loss_iter', loss_mm, global_step)
                    writer.add_scalar('train/lr_iter', optimizer.param_groups[0]['lr'], global_step)
            asked = time.perf_counter()
    seconds = time.time() - start
    total_loss, total_samples, total_skipped, wait_fractions = dist.all_reduce_sum(
        [loss_sum.item(), samples, skipped, waited / max(seconds, 1e-9)], device)
    return {'loss': total_loss / total_samples if total_samples else math.nan, 'samples': int(total_samples),
            'skipped': int(total_skipped), 'seconds': seconds, 'global_step': global_step,
            'data_wait': wait_fractions / dist.get_world_size()}


@torch.no_grad()
def predict(model, loader, preparer, flip_test=True, amp='off', desc='eval'):
    """Predictions and targets for this rank's loader, in loader order: two (N, 1, J, 3) tensors.

    With ``flip_test`` the preparer must stack mirrored copies; the prediction of the mirrored
    input is mirrored back and averaged with the plain one.
    """
    model.eval()
    device = preparer.device
    preds, targets = [], []
    with tqdm(Prefetcher(loader, preparer), desc=desc, disable=not dist.is_main_process(), dynamic_ncols=True,
              mininterval=1.0) as progress:
        for images, joints_3d, keypoints_2d, keypoints_crop in progress:
            with autocast_context(amp, device):
                if flip_test:
                    pred = model(images[:, 0], keypoints_2d[:, 0], keypoints_crop[:, 0]).float()
                    pred_mirrored = model(images[:, 1], keypoints_2d[:, 1], keypoints_crop[:, 1]).float()
                    pred = preparer.merge_flip_test(pred, pred_mirrored)
                else:
                    pred = model(images, keypoints_2d, keypoints_crop).float()
            preds.append(pred)
            targets.append(joints_3d)
    empty = torch.zeros((0, 1, preparer.skeleton.num_joints, 3), device=device)
    return (torch.cat(preds) if preds else empty), (torch.cat(targets) if targets else empty)


def evaluate(model, loader, preparer, dataset, flip_test=True, amp='off'):
    """Runs every rank on its contiguous shard, gathers the shards in rank order and evaluates the
    whole file once with the dataset's protocol. Returns (EvaluationReport, predictions) on
    rank 0 and (None, None) elsewhere; predictions are (N, 1, J, 3) metres on the CPU."""
    pred, target = predict(model, loader, preparer, flip_test=flip_test, amp=amp)
    if dataset.dist_size is not None:
        pred = dist.gather_shards(pred, dataset.dist_size)
        target = dist.gather_shards(target, dataset.dist_size)
    if not dist.is_main_process():
        return None, None
    pred, target = pred.cpu(), target.cpu()
    return dataset.evaluate(target, pred), pred
