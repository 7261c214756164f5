"""Person boxes: from a file, from a torchvision detector, or from 2D keypoints; and the crop
(center, scale) a box gives.

A person box is [x0, y0, x1, y1] in frame pixels around the visible person. The network crop is
made as the Human3.6M labels make theirs (``mvn.utils.img``): a centre and a square box of side
``s`` pixels (``scale = s / 200``), warped to 192x256 so that the box's width fills the crop's
width and the crop reaches a third further vertically. The labels' box is 2 m wide at the
pelvis' depth, around a person about 1.75 m tall, so a person box becomes a square of side
``PERSON_TO_CROP`` times its longer side, about the same centre.
"""
import json
import os

import numpy as np

PERSON_TO_CROP = 2000.0 / 1750.0        # label box side / person height (module docstring)
# A box from 2D keypoints (COCO: eyes to ankles) reaches beyond them by these fractions of the
# keypoints' height: above (the top of the head), below (the soles), and to each side.
KEYPOINT_BOX_MARGINS = (0.12, 0.05, 0.08)


class BoxError(ValueError):
    """A box or boxes file that cannot be used; the message names it."""


def crop_from_box(box, factor=PERSON_TO_CROP):
    """Person box [x0, y0, x1, y1] -> (center (2,), scale (2,)) float64 for mvn.utils.img."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = factor * max(x1 - x0, y1 - y0, 1.0)
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return center, np.array([side / 200.0, side / 200.0])


def whole_frame_crop(width, height, crop_size=(192, 256)):
    """(center, scale) of a crop that shows the whole frame (letterboxed): its width fills the
    crop's width, or its height the crop's height."""
    crop_w, crop_h = crop_size
    # The crop shows s pixels across and about s * (H-1)/(W-1) down.
    side = max(float(width), float(height) * (crop_w - 1) / (crop_h - 1))
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0]), np.array([side / 200.0, side / 200.0])


def box_from_keypoints(keypoints, scores, threshold):
    """Person box around the (K, 2) frame-pixel keypoints whose score is above ``threshold``,
    widened by KEYPOINT_BOX_MARGINS; None when fewer than 4 keypoints are that sure."""
    keypoints = np.asarray(keypoints, np.float64)
    sure = np.asarray(scores) > threshold
    if sure.sum() < 4:
        return None
    x0, y0 = keypoints[sure].min(axis=0)
    x1, y1 = keypoints[sure].max(axis=0)
    extent = max(y1 - y0, x1 - x0, 1.0)
    top, bottom, side = KEYPOINT_BOX_MARGINS
    return np.array([x0 - side * extent, y0 - top * extent, x1 + side * extent, y1 + bottom * extent])


def iou(a, b):
    """Intersection over union of two boxes [x0, y0, x1, y1]."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_box(box, where):
    """[x0, y0, x1, y1] as float64, or BoxError naming ``where``."""
    try:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise BoxError('%s: a box must be four numbers x0, y0, x1, y1, got %r' % (where, box)) from None
    if box.shape != (4,):
        raise BoxError('%s: a box must be four numbers x0, y0, x1, y1, got %s' % (where, box.tolist()))
    if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise BoxError('%s: a box must be x0, y0, x1, y1 with x1 > x0 and y1 > y0, got %s'
                       % (where, np.round(box, 2).tolist()))
    return box


def parse_box(text):
    """'x0,y0,x1,y1' (the --box option) -> box."""
    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        raise BoxError('--box: expected x0,y0,x1,y1, got %r' % text) from None
    return check_box(values, '--box')


def load_boxes_file(path):
    """A boxes JSON file -> {frame index: [box, ...]}. Accepted forms: a list with one entry per
    frame, or ``{"frames": [...]}``; an entry is a list of boxes, ``{"boxes": [...]}``, or
    ``{"frame": i, "boxes": [...]}`` (then frames may be left out). A box is [x0, y0, x1, y1]
    or {"box": [...]} (results.json's people work too)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BoxError('boxes file not found: %s' % path) from None
    except (OSError, ValueError) as e:
        raise BoxError('cannot read boxes file %s: %s' % (path, str(e).splitlines()[0])) from None
    entries = data.get('frames') if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise BoxError('%s: expected a list of frames or {"frames": [...]}' % path)
    boxes = {}
    for i, entry in enumerate(entries):
        frame = i
        if isinstance(entry, dict):
            frame = int(entry.get('frame', i))
            entry = entry.get('boxes', entry.get('people', []))
        if not isinstance(entry, list):
            raise BoxError('%s: frame %d: expected a list of boxes' % (path, frame))
        if len(entry) == 4 and all(isinstance(v, (int, float)) for v in entry):
            entry = [entry]              # a single box written without its list
        boxes[frame] = [check_box(b['box'] if isinstance(b, dict) else b, '%s, frame %d' % (path, frame))
                        for b in entry]
    return boxes


TORCHVISION_DETECTOR_FILE = 'data/pretrained/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth'


class TorchvisionDetector:
    """torchvision's COCO Faster R-CNN (ResNet-50 FPN), from its weight file (the one torchvision
    downloads as ``FasterRCNN_ResNet50_FPN_Weights.COCO_V1``; place it at
    TORCHVISION_DETECTOR_FILE). Called on a BGR frame, returns person boxes with scores, best first."""

    PERSON = 1                            # the COCO category of people in torchvision's label map

    def __init__(self, path, device, threshold=0.5):
        import torch
        import torchvision
        from mvn.utils.checkpoint import read_weights
        self.torch = torch
        state = read_weights(path, 'person detector', hint='torchvision Faster R-CNN ResNet-50 FPN COCO weights')
        self.model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        self.model.load_state_dict(state)
        self.model.eval().to(device)
        self.device = device
        self.threshold = threshold

    @staticmethod
    def available(path=TORCHVISION_DETECTOR_FILE):
        return os.path.isfile(path)

    def __call__(self, frame_bgr):
        torch = self.torch
        image = torch.from_numpy(np.ascontiguousarray(frame_bgr[..., ::-1])).to(self.device)
        with torch.no_grad():
            out = self.model([image.permute(2, 0, 1).float() / 255.0])[0]
        keep = (out['labels'] == self.PERSON) & (out['scores'] >= self.threshold)
        boxes, scores = out['boxes'][keep].cpu().numpy(), out['scores'][keep].cpu().numpy()
        order = np.argsort(-scores)
        return [(boxes[i].astype(np.float64), float(scores[i])) for i in order]
