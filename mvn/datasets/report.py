"""What an evaluation protocol hands back: the figures of a whole label file, ready to be
printed, saved as JSON, plotted in TensorBoard, and compared to pick the best checkpoint.

Each dataset kind's protocol returns a subclass (Human3.6M: ``evaluation.ActionReport``).
Column names carry their unit (``p1_mm``, ``pck_pct``; ``frames`` counts); values are plain
floats in that unit.
"""
import re


class EvaluationReport:
    """``rows``: {group: {column: value}}, one row per action, sequence, ...; ``summary``:
    {column: value}, the overall figures; ``score``: the figure that picks the best checkpoint
    (lower is better, a new best is strictly lower). A subclass sets those and the class
    attributes below, and writes ``table_lines``."""

    group_name = 'groups'       # what a row is, plural: the JSON key and TensorBoard section
    score_name = 'score'        # in messages: 'best <score_name> <score> <score_unit>'
    score_unit = ''
    epoch_columns = ()          # summary columns on the '[Epoch N]' line, as 'val-<tag>: <value>'

    def __init__(self, rows, summary, score):
        self.rows = rows
        self.summary = summary
        self.score = score

    def table_lines(self):
        """The printed table (a list of lines)."""
        raise NotImplementedError

    def describe_score(self, score=None):
        """'average P1 41.3 mm' for ``score`` (default: this report's)."""
        return ('%s %.1f %s' % (self.score_name, self.score if score is None else score, self.score_unit)).strip()

    def epoch_text(self):
        return ' | '.join('val-%s: %.1f' % (tag_of(c), round(self.summary[c], 1)) for c in self.epoch_columns)

    def to_json(self):
        return {'summary': dict(self.summary), self.group_name: {name: dict(row) for name, row in self.rows.items()}}

    def scalars(self, prefix='val'):
        """TensorBoard scalars: '<prefix>/<tag>' overall and '<prefix>_<groups>/<tag>_<row>' per row
        (tags are column names without their unit; counts are left out)."""
        values = {'%s/%s' % (prefix, tag_of(c)): v for c, v in self.summary.items() if tag_of(c) != c}
        for name, row in self.rows.items():
            values.update({'%s_%s/%s_%s' % (prefix, self.group_name, tag_of(c), name): v
                           for c, v in row.items() if tag_of(c) != c})
        return values


def tag_of(column):
    """'p1_mm' -> 'p1', 'pck_pct' -> 'pck'; a column without a unit (a count) is returned as is."""
    return re.sub(r'_(mm|pct|m|deg)$', '', column)
