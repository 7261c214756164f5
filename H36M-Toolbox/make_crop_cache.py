#!/usr/bin/env python3
"""Step 4 (optional): cut the 192x256 crop of every labelled frame once, into a crop cache.

    python H36M-Toolbox/make_crop_cache.py --labels data/h36m_train.pkl --images H36M-Toolbox/images/

writes data/h36m_train.pkl.crops (or --out PATH); a run with ``dataset.crop_cache: auto`` then
reads crops from it instead of decoding every full frame. The default codec stores the crops
bit for bit (evaluation figures unchanged to the last digit); ``--codec jpeg95`` is smaller but
lossy (opt-in). Runs on every core (``--workers N``) with a progress bar; after an interruption
the same command continues where it stopped; an existing cache is never replaced unless --force.
See mvn/datasets/crop_cache.py for the format and the checks.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mvn.datasets.crop_cache import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(description=__doc__, kind='human36m'))
