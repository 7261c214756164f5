"""In-the-wild inference: BGR frames -> person boxes -> 2D keypoints -> 3D poses (``demo.py``).

    from mvn.inference import Pose3DEstimator
    estimator = Pose3DEstimator('checkpoint/best_epoch_hrnet_32.bin')
    people = estimator(cv2.imread('photo.jpg'))          # [{'box', 'keypoints_2d', 'keypoints_3d', ...}]

Files: ``estimator.py`` (the pipeline), ``model.py`` (weights), ``boxes.py`` (boxes and crops),
``locator.py`` (a person from heatmaps), ``keypoints.py`` (heatmap decoding, COCO -> Human3.6M),
``smoothing.py`` (One-Euro filter, tracks), ``media.py`` (reading frames, writing results).
"""
from mvn.inference.estimator import Pose3DEstimator  # noqa: F401
