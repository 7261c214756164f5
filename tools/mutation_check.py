"""Mutation check: do the fast tests notice a one-line mistake in the code that decides the numbers?

Each mutant below changes one line of the model, batch preparation, crop, metrics, evaluation
protocol or training loop (a sign, an axis, a constant, a weighting, a comparison). For each, the
file is changed, the relevant fast tests run (``pytest -x``, a timeout per mutant), and the file
is restored, always (also on Ctrl-C or SIGTERM; a run killed with -9 leaves a backup that the
next run restores first). A mutant is *caught* when a test fails (or times out), *missed* when
they all pass. Prints every mutant's fate and the test that caught it, then the score.

    python tools/mutation_check.py                 # all mutants (several minutes; not part of CI)
    python tools/mutation_check.py --only loss     # mutants whose file or label contains 'loss'
    python tools/mutation_check.py --list          # the mutants, without running anything

Run it on a quiet machine, from the repository root; it edits files in place, so nothing else
(another test run, an editor) should use this checkout meanwhile. Exit status 0 when the score
reaches --target (default 90%), 1 otherwise.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
from typing import NamedTuple, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKUP_SUFFIX = '.mutation-backup'

# The fast tests (in-process, tiny tensors) of each area, as pytest arguments (with -x, the ones
# that catch most come first).
BATCH = ('tests/test_geometry_and_batch.py', 'tests/test_flip_test_by_hand.py', 'tests/test_published_constants.py')
MODEL = ('tests/test_official_reference.py::test_the_model_gives_the_official_outputs_in_eval_and_train_mode',
         'tests/test_flip_test_by_hand.py', 'tests/test_model.py')
METRICS = ('tests/test_metrics.py', 'tests/test_protocol_by_hand.py',
           'tests/test_official_reference.py::test_the_evaluation_gives_the_official_table')
CROP = ('tests/test_geometry_and_batch.py', 'tests/test_flip_test_by_hand.py', 'tests/test_published_constants.py')
TRAINING = ('tests/test_training_rules.py', 'tests/test_engine.py', 'tests/test_protocol_by_hand.py')
REGION = ('tests/test_jpeg_region.py',)


class Mutant(NamedTuple):
    path: str           # relative to the repository root
    old: str            # text that occurs exactly once in the file
    new: str
    tests: Tuple[str, ...]
    label: str


def m(path, old, new, tests, label):
    return Mutant(path, old, new, tests, label)


PD, TR, CP = 'mvn/models/pose_dformer.py', 'mvn/models/transformer.py', 'mvn/models/conpose.py'
LOSS, BATCHPY, EVAL = 'mvn/models/loss.py', 'mvn/datasets/batch.py', 'mvn/datasets/evaluation.py'
IMG, TRAIN, ENGINE = 'mvn/utils/img.py', 'mvn/training.py', 'mvn/engine.py'
IMAGES = 'mvn/datasets/images.py'

MUTANTS = [
    # the context-aware head
    m(PD, 'weights.softmax(dim=-1)', 'weights.softmax(dim=-2)', MODEL, 'sample weights: softmax over heads'),
    m(PD, "positions[:, level], padding_mode='border'", "positions[:, level], padding_mode='zeros'", MODEL,
      'context samples: zero padding'),
    m(PD, "padding_mode='zeros').squeeze(-2)", "padding_mode='border').squeeze(-2)", MODEL,
      'joint samples: border padding'),
    m(PD, "mode='bilinear', padding_mode=padding_mode, align_corners=True)",
      "mode='bilinear', padding_mode=padding_mode, align_corners=False)", MODEL, 'grid_sample align_corners'),
    m(PD, '.reshape(b, num_levels, num_joints, heads * samples, 2).tanh()',
      '.reshape(b, num_levels, num_joints, heads * samples, 2).sigmoid()', MODEL, 'offsets: sigmoid'),
    m(PD, 'positions = offsets + ref.view(b, 1, num_joints, 1, 2)', 'positions = offsets + 0 * ref.view(b, 1, num_joints, 1, 2)',
      MODEL, 'offsets not around the joint'),
    m(PD, 'query = self.norm1(levels + coord_token)', 'query = self.norm1(levels)', MODEL, 'query without coordinate token'),
    m(PD, 'levels = levels + self.drop_path(context)', 'levels = self.drop_path(context)', MODEL, 'context residual dropped'),
    m(PD, 'x = torch.stack(tokens, dim=1) + self.Spatial_pos_embed', 'x = torch.stack(tokens, dim=1)', MODEL,
      'no position embedding'),
    m(PD, 'torch.linspace(0, drop_path_rate, depth)', 'torch.linspace(drop_path_rate, 0, depth)', MODEL,
      'stochastic depth rates reversed'),
    m(PD, 'directions = 0.01 * directions', 'directions = 0.02 * directions', MODEL, 'offset ring radius'),
    m(PD, 'x = x.transpose(1, 2).reshape(b * num_joints, x.shape[1], x.shape[3])',
      'x = x.reshape(b * num_joints, x.shape[1], x.shape[3])', MODEL, 'tokens not grouped per joint'),
    m(TR, 'mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)',
      'mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(self.p)', MODEL, 'drop path: keep p'),
    m(TR, 'return x * mask.div_(keep)', 'return x * mask', MODEL, 'drop path: no rescale'),
    m(TR, 'self.scale = (dim // num_heads) ** -0.5', 'self.scale = (dim // num_heads) ** 0.5', MODEL, 'attention scale'),
    m(TR, 'x = x + self.drop_path(self.attn(self.norm1(x)))', 'x = self.drop_path(self.attn(self.norm1(x)))', MODEL,
      'attention residual dropped'),
    m(TR, "drop_path=0.0, norm_eps=1e-6):", "drop_path=0.0, norm_eps=1e-5):", MODEL, 'LayerNorm eps'),
    m(CP, '            self.backbone.eval()      # BatchNorm', '            pass      # BatchNorm', MODEL,
      'frozen backbone BatchNorm follows train mode'),
    m(CP, 'torch.tensor([width // 2, height // 2]', 'torch.tensor([height // 2, width // 2]', MODEL,
      'crop-to-grid axes swapped'),
    m(CP, 'return keypoints_2d_crop / self.crop_half_size - 1', 'return keypoints_2d_crop / self.crop_half_size - 0.99',
      MODEL, 'crop-to-grid offset'),
    # metrics
    m(LOSS, '    s[:, -1] *= sign[:, 0]\n', '', METRICS, 'Procrustes: reflection kept in the scale'),
    m(LOSS, '    v[:, :, -1] *= sign\n', '', METRICS, 'Procrustes: reflection allowed'),
    m(LOSS, 'scale = s.sum(axis=1)[:, None, None] * norm_gt / norm_pred',
      'scale = s.sum(axis=1)[:, None, None] * norm_pred / norm_gt', METRICS, 'Procrustes: scale inverted'),
    m(LOSS, 'shift = mu_gt - scale * np.matmul(mu_pred, rotation)', 'shift = mu_gt - np.matmul(mu_pred, rotation)',
      METRICS, 'Procrustes: shift unscaled'),
    m(LOSS, 'return _joint_distances(pred, gt).mean()', 'return _joint_distances(pred, gt).max()', METRICS + TRAINING,
      'MPJPE: max instead of mean'),
    m(LOSS, 'return torch.linalg.vector_norm(pred - gt, dim=-1)', 'return torch.linalg.vector_norm(pred - gt, dim=-2)',
      METRICS + TRAINING, 'MPJPE (torch): norm over joints'),
    m(LOSS, 'return float(mpjpe(np.diff(pred, axis=0), np.diff(gt, axis=0)))',
      'return float(mpjpe(np.diff(pred, axis=1), np.diff(gt, axis=1)))', METRICS, 'MPJVE: differences over joints'),
    # the Human3.6M protocol
    m(EVAL, "sums['P_MPJPE'] += n * p_mpjpe", "sums['P_MPJPE'] += p_mpjpe", METRICS, 'P2 not frame-weighted'),
    m(EVAL, "sums['MPJVE'] += n * mpjve", "sums['MPJVE'] += mpjve", METRICS, 'MPJVE not frame-weighted'),
    m(EVAL, "sums['MPJPE'] += n * float(mpjpe", "sums['MPJPE'] += float(mpjpe", METRICS, 'P1 not frame-weighted'),
    m(EVAL, 'velocity_frames += n', 'velocity_frames += n - 1', METRICS, 'MPJVE weights n - 1'),
    m(EVAL, 'if n > 1:', 'if n > 0:', METRICS, 'one-frame trials in MPJVE'),
    m(EVAL, "sums['MPJVE'] / velocity_frames if", "sums['MPJVE'] / frames if", METRICS, 'MPJVE over all frames'),
    m(EVAL, 'return {key: float(np.mean(', 'return {key: float(np.median(', METRICS, 'median over actions'),
    m(EVAL, "score=round(average['p1'], 1)", "score=average['p1']", METRICS + TRAINING, 'best score unrounded'),
    m(EVAL, 'for t in (2 * a, 2 * a + 1):', 'for t in (2 * a,):', METRICS, 'second trial ignored'),
    m(EVAL, "float(np.mean([1000.0 * r[metric]", "float(np.mean([100.0 * r[metric]", METRICS, 'average not in mm'),
    # batch preparation and the flip test
    m(BATCHPY, 'out[..., 0] = crop_width - out[..., 0] - 1', 'out[..., 0] = crop_width - out[..., 0]', BATCH,
      'crop mirror W - x'),
    m(BATCHPY, 'out[..., 0] *= -1', 'out[..., 1] *= -1', BATCH, 'mirror negates y'),
    m(BATCHPY, 'torch.cat((pred, mirror_poses(pred_mirrored, flip_permutation)), dim=1)',
      'torch.cat((pred, pred_mirrored), dim=1)', BATCH, 'merge without mirroring back'),
    m(BATCHPY, '.mean(dim=1, keepdim=True)', '.sum(dim=1, keepdim=True)', BATCH, 'merge sums'),
    m(BATCHPY, 'torch.rand((), generator=self.generator).item() < 0.5', 'torch.rand((), generator=self.generator).item() < 0.0',
      BATCH, 'training never flips'),
    m(BATCHPY, 'self.normalize(torch.flip(images, [-1]) / 255.0)', 'self.normalize(images / 255.0)', BATCH,
      'BGR not turned into RGB'),
    m(BATCHPY, 'out = joints_3d - joints_3d[:, :, root:root + 1]', 'out = joints_3d - joints_3d[:, :, 0:1]', BATCH,
      'root joint 0 always'),
    m(BATCHPY, 'return torch.flip(images, [-2])', 'return torch.flip(images, [-3])', BATCH, 'image flipped upside down'),
    m(BATCHPY, 'torch.stack([x, m], dim=1)', 'torch.stack([m, x], dim=1)', BATCH, 'flip-test copies swapped'),
    m('mvn/datasets/skeleton.py', 'perm[left], perm[right] = right, left', 'perm[left] = right', BATCH,
      'flips: half a swap'),
    # the crop
    m(IMG, 'flags=cv2.INTER_LINEAR', 'flags=cv2.INTER_NEAREST', CROP, 'nearest-neighbour crop'),
    m(IMG, 'flags=cv2.INTER_LINEAR', 'flags=cv2.INTER_CUBIC', CROP, 'bicubic crop'),
    m(IMG, 'np.array([0, (src_width - 1) * -0.5], np.float32)', 'np.array([0, src_width * -0.5], np.float32)', CROP,
      'box width not minus one'),
    m(IMG, 'dst[0] = [(dst_w - 1) * 0.5, (dst_h - 1) * 0.5]', 'dst[0] = [dst_w * 0.5, dst_h * 0.5]', CROP,
      'crop centre at W/2'),
    m(IMG, 'return points @ transform[:, :2].T + transform[:, 2]', 'return points @ transform[:, :2] + transform[:, 2]',
      CROP, 'points by the transposed matrix'),
    m(IMG, 'cv2.getAffineTransform(dst, src) if inverse', 'cv2.getAffineTransform(src, dst) if inverse', CROP,
      'inverse not inverted'),
    # the crop from a partly decoded frame
    m(IMAGES, 'REGION_MARGIN = 16', 'REGION_MARGIN = 0', REGION, 'no margin past the pixels the warp reads'),
    m(IMAGES, 'math.floor(right) + 2 + margin', 'math.floor(right) + 1 + margin', REGION,
      'rectangle misses the last column the warp reads'),
    m(IMAGES, 'max(math.floor(top) - margin, 0)', 'max(math.floor(top) + 1 - margin, 0)', REGION,
      'rectangle misses the first row the warp reads'),
    m(IMAGES, 'corners.min(axis=0), corners.max(axis=0)', 'corners.min(axis=0), corners.mean(axis=0)', REGION,
      'rectangle ends at the crop centre'),
    m(IMAGES, 'if rectangle is None or _jpeg_region', 'if True or _jpeg_region', REGION,
      'a declined file is not decoded whole'),
    # the training loop
    m(TRAIN, 'if report.score < self.best_score:', 'if report.score <= self.best_score:', TRAINING,
      'best checkpoint on an equal score'),
    m(TRAIN, 'if report.score < self.best_score:', 'if True:', TRAINING, 'best checkpoint always overwritten'),
    m(TRAIN, 'weight_decay=cfg.train.weight_decay)', 'weight_decay=0.0)', TRAINING, 'no weight decay'),
    m(TRAIN, 'torch.optim.AdamW(', 'torch.optim.Adam(', TRAINING, 'Adam instead of AdamW'),
    m(TRAIN, 'rank * 10_007 + epoch)', 'rank * 10_007)', TRAINING, 'seed ignores the epoch'),
    m(TRAIN, 'rank * 10_007 + epoch)', 'epoch)', TRAINING, 'seed ignores the rank'),
    m(TRAIN, '        preparer.generator.manual_seed(epoch_seed)\n', '', TRAINING, 'flips not reseeded'),
    m(TRAIN, 'self.lr *= self.cfg.train.volume_net_lr_decay', 'self.lr *= 1.0', TRAINING, 'no lr decay'),
    m(TRAIN, 'loader.sampler.generator.manual_seed(epoch_seed)', 'pass', TRAINING, 'shuffle not reseeded'),
    m(ENGINE, 'loss_sum += loss.detach().double() * joints_3d.shape[0]', 'loss_sum += loss.detach().double()', TRAINING,
      'loss averaged over batches'),
    m(ENGINE, 'samples += joints_3d.shape[0]', 'samples += 1', TRAINING, 'samples counted as batches'),
    m(ENGINE, 'clip_grad_norm_(model.parameters(), grad_clip / base_lr)', 'clip_grad_norm_(model.parameters(), grad_clip)',
      TRAINING, 'clip without / lr'),
    m(ENGINE, 'if dist.any_rank(torch.isnan(loss)):', 'if False:', TRAINING, 'NaN batches not skipped'),
    m(ENGINE, 'pred_mirrored = model(images[:, 1], keypoints_2d[:, 1], keypoints_crop[:, 1]).float()',
      'pred_mirrored = model(images[:, 1], keypoints_2d[:, 0], keypoints_crop[:, 1]).float()', BATCH,
      'flip test: plain 2D keypoints for the mirror'),
]


def backup_path(path):
    return os.path.join(REPO, path + BACKUP_SUFFIX)


def restore_leftovers():
    """Puts back any file a killed earlier run left mutated."""
    for path in {mutant.path for mutant in MUTANTS}:
        backup = backup_path(path)
        if os.path.exists(backup):
            os.replace(backup, os.path.join(REPO, path))
            print('restored %s from an interrupted run' % path)


def check_mutants(mutants):
    """Every mutant's text must occur exactly once (the code may have moved on)."""
    stale = []
    for mutant in mutants:
        with open(os.path.join(REPO, mutant.path)) as f:
            count = f.read().count(mutant.old)
        if count != 1:
            stale.append('%s: %r occurs %d times' % (mutant.path, mutant.old, count))
    return stale


def run_tests(tests, timeout):
    """(passed, what failed or 'timeout'): pytest -x on ``tests`` in a process group of its own."""
    command = [sys.executable, '-m', 'pytest', '-x', '-v', '-p', 'no:cacheprovider', '-rfE', *tests]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return False, 'timeout after %d s' % timeout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode == 0:
        return True, ''
    failed = re.findall(r'^(?:FAILED|ERROR) (\S+)', output, re.MULTILINE)
    if failed:
        return False, failed[0]
    started = re.findall(r'^(tests/\S+::\S+)', output, re.MULTILINE)     # a crash: the test that was running
    return False, 'pytest exit status %d%s' % (process.returncode, ' in ' + started[-1] if started else '')


def apply(mutant):
    path = os.path.join(REPO, mutant.path)
    with open(path) as f:
        original = f.read()
    with open(backup_path(mutant.path), 'w') as f:
        f.write(original)
    with open(path, 'w') as f:
        f.write(original.replace(mutant.old, mutant.new, 1))


def restore(mutant):
    backup = backup_path(mutant.path)
    if os.path.exists(backup):
        os.replace(backup, os.path.join(REPO, mutant.path))


def line_of(mutant):
    with open(os.path.join(REPO, mutant.path)) as f:
        return f.read().split(mutant.old)[0].count('\n') + 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', help='run the mutants whose file or label contains this text')
    parser.add_argument('--list', action='store_true', help='list the mutants and exit')
    parser.add_argument('--timeout', type=float, default=300, help='seconds per mutant (default 300)')
    parser.add_argument('--target', type=float, default=90.0, help='score to reach, percent (default 90)')
    args = parser.parse_args(argv)

    def on_stop(signum, frame):
        raise KeyboardInterrupt
    # SIGINT too: a background job starts with it ignored, and then kill -INT would do nothing.
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    restore_leftovers()
    mutants = [mu for mu in MUTANTS if not args.only or args.only in mu.path or args.only in mu.label]
    stale = check_mutants(mutants)
    if stale:
        print('error: stale mutants (update tools/mutation_check.py):\n  ' + '\n  '.join(stale), file=sys.stderr)
        return 2
    if args.list:
        for i, mu in enumerate(mutants, 1):
            print('%2d %s:%d  %s' % (i, mu.path, line_of(mu), mu.label))
        return 0

    tests = sorted({t for mu in mutants for t in mu.tests})
    print('baseline: %d test selections, unchanged code ...' % len(tests), flush=True)
    passed, failure = run_tests(tests, args.timeout * 2)
    if not passed:
        print('error: the tests fail on the unchanged code (%s); fix that first' % failure, file=sys.stderr)
        return 2

    caught, missed = [], []
    start = time.time()
    try:
        for i, mutant in enumerate(mutants, 1):
            where = '%s:%d' % (mutant.path, line_of(mutant))
            try:
                apply(mutant)
                survived, failure = run_tests(mutant.tests, args.timeout)
            finally:
                restore(mutant)
            (missed if survived else caught).append(mutant)
            print('[%2d/%d] %-8s %-34s %-46s %s' % (i, len(mutants), 'MISSED' if survived else 'caught', where,
                                                   mutant.label, '' if survived else 'by ' + failure), flush=True)
    except KeyboardInterrupt:
        print('\ninterrupted; every file is restored', file=sys.stderr)
        return 130
    score = 100.0 * len(caught) / max(len(mutants), 1)
    print('\nmutation score: %d of %d caught (%.1f%%) in %.0f s' % (len(caught), len(mutants), score,
                                                                    time.time() - start))
    for mutant in missed:
        print('  missed: %s  %s: %r -> %r' % (mutant.path, mutant.label, mutant.old, mutant.new))
    return 0 if score >= args.target else 1


if __name__ == '__main__':
    sys.exit(main())
