"""The Human3.6M evaluation protocol of the official code.

For each of the 30 action trials (action 2..16 x subaction 1..2), over its frames in dataset
order: P1 = MPJPE, P2 = P-MPJPE (per-frame similarity Procrustes), MPJVE = velocity error along
that frame sequence. Each is weighted by the trial's frame count, the two trials of an action are
merged, and the reported average is the plain mean over the actions. Inputs in metres; the
table, the JSON and TensorBoard get millimetres (``ActionReport``).
"""
import numpy as np

from mvn.datasets.h36m_meta import ACTION_NAMES, action_trial_index
from mvn.datasets.report import EvaluationReport
from mvn.models.loss import mpjpe, mpjve, p_mpjpe

METRICS = ('MPJPE', 'P_MPJPE', 'MPJVE')


def _as_poses(x):
    x = x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)
    return x.reshape(x.shape[0], -1, 3)


def evaluate_by_action(pred, gt, action, subaction):
    """pred, gt: (N, [1,] J, 3) metres; action, subaction: (N,) ints of the same frames.

    Returns {action name: {'MPJPE', 'P_MPJPE', 'MPJVE' (metres), 'frame_count'}} for every action
    with frames, in the official order. A trial with a single frame has no velocity; it then
    adds no MPJVE weight (the official code would give NaN).
    """
    pred, gt = _as_poses(pred), _as_poses(gt)
    if pred.shape != gt.shape:
        raise ValueError('predictions %s and ground truth %s differ in shape' % (pred.shape, gt.shape))
    trial = action_trial_index(np.asarray(action), np.asarray(subaction))
    if trial.shape != (len(gt),):
        raise ValueError('%d action indices for %d poses' % (trial.size, len(gt)))

    results = {}
    for a, name in enumerate(ACTION_NAMES):
        sums = dict.fromkeys(METRICS, 0.0)
        frames = velocity_frames = 0
        for t in (2 * a, 2 * a + 1):
            mask = trial == t
            n = int(mask.sum())
            if n == 0:
                continue
            sums['MPJPE'] += n * float(mpjpe(pred[mask], gt[mask]))
            sums['P_MPJPE'] += n * p_mpjpe(pred[mask], gt[mask])
            if n > 1:
                sums['MPJVE'] += n * mpjve(pred[mask], gt[mask])
                velocity_frames += n
            frames += n
        if frames:
            results[name] = {'MPJPE': sums['MPJPE'] / frames, 'P_MPJPE': sums['P_MPJPE'] / frames,
                             'MPJVE': sums['MPJVE'] / velocity_frames if velocity_frames else float('nan'),
                             'frame_count': frames}
    return results


def summarize(results):
    """Plain means over the actions, in millimetres: {'p1', 'p2', 'mpjve'}."""
    if not results:
        raise ValueError('no action has any frame to evaluate')
    return {key: float(np.mean([1000.0 * r[metric] for r in results.values()]))
            for key, metric in (('p1', 'MPJPE'), ('p2', 'P_MPJPE'), ('mpjve', 'MPJVE'))}


def format_table(results):
    """The official printout: one line per action, then the averages."""
    lines = ['%s: p1=%.2f, p2=%.2f, e_vel=%.2f' % (name, 1000 * r['MPJPE'], 1000 * r['P_MPJPE'], 1000 * r['MPJVE'])
             for name, r in results.items()]
    avg = summarize(results)
    lines.append('avg p1: %s p2: %s MPJVE: %s' % (round(avg['p1'], 1), round(avg['p2'], 1), round(avg['mpjve'], 2)))
    return lines


class ActionReport(EvaluationReport):
    """The Human3.6M protocol's report: a row per action (p1_mm, p2_mm, mpjve_mm, frames), the
    plain means over the actions, and the best-checkpoint score: the average P1 rounded to
    0.1 mm, as the official code compares it. ``results``: evaluate_by_action's (metres)."""

    group_name = 'actions'
    score_name = 'average P1'
    score_unit = 'mm'
    epoch_columns = ('p1_mm', 'p2_mm')

    def __init__(self, results):
        average = summarize(results)
        rows = {name: {'p1_mm': 1000 * r['MPJPE'], 'p2_mm': 1000 * r['P_MPJPE'], 'mpjve_mm': 1000 * r['MPJVE'],
                       'frames': r['frame_count']} for name, r in results.items()}
        summary = {'p1_mm': average['p1'], 'p2_mm': average['p2'], 'mpjve_mm': average['mpjve']}
        super().__init__(rows, summary, score=round(average['p1'], 1))
        self.results = results

    def table_lines(self):
        return format_table(self.results)

