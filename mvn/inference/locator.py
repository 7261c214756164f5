"""Finding one person with no detector: the COCO HRNet's own heatmaps.

1. If the previous video frame had a person, look in the crop of that box first (tracking).
2. Otherwise look at the whole frame, letterboxed into one crop: the keypoints whose heatmap
   peak is above the threshold give a rough person box (none: nobody in this frame).
3. Refine: the crop of that box, at the network's working scale, gives the keypoints again and
   the final box.

A person needs at least 4 keypoints above the threshold; the score is the mean peak of those.
This finds the most salient single person; for several people, place torchvision's detector
weights (``boxes.TORCHVISION_DETECTOR_FILE``) or give boxes.
"""
import numpy as np

from mvn.inference.boxes import box_from_keypoints, crop_from_box, whole_frame_crop


class HeatmapPersonLocator:
    """``locator(frame, previous_box, threshold)`` -> [(box, score)] (zero or one person).

    keypoints_fn(frames, centers, scales, flip=False) -> (keypoints (B, 17, 2) frame px,
    scores (B, 17)): the COCO keypoints of crops (``Pose3DEstimator.coco_keypoints``)."""

    def __init__(self, keypoints_fn, crop_size=(192, 256)):
        self.keypoints_fn = keypoints_fn
        self.crop_size = crop_size

    def _look(self, frame, center, scale, threshold):
        points, scores = self.keypoints_fn([frame], [center], [scale], flip=False)
        box = box_from_keypoints(points[0], scores[0], threshold)
        sure = scores[0] > threshold
        return box, (float(scores[0][sure].mean()) if sure.any() else 0.0)

    def __call__(self, frame, previous_box=None, threshold=0.2):
        if previous_box is not None:
            box, score = self._look(frame, *crop_from_box(previous_box), threshold)
            if box is not None:
                return [(box, score)]
        h, w = frame.shape[:2]
        box, score = self._look(frame, *whole_frame_crop(w, h, self.crop_size), threshold)
        if box is None:
            return []
        refined, refined_score = self._look(frame, *crop_from_box(box), threshold)
        return [(refined, refined_score)] if refined is not None else [(box, score)]
