"""Pose3DEstimator: BGR frames -> people with boxes, 2D keypoints and root-relative 3D poses.

Per person: a box (given, from a boxes file, from torchvision's detector when its weight file is
present, else located from HRNet heatmaps; see ``locator.py``), the crop the Human3.6M labels
would make of it (``mvn.utils.img``), 2D keypoints from the COCO HRNet heatmaps of that crop
(``keypoints.py``, with HRNet's flip test) or from the user, mapped to the Human3.6M-17 joints,
then CA-PF on the same crop with the evaluation's batch preparation and flip test
(``mvn.datasets.batch``). One backbone pass serves the 2D and the 3D networks when CA-PF's
backbone is the COCO one (true of the released checkpoints).
"""
import numpy as np
import torch

from mvn.datasets.batch import BatchPreparer, merge_flip_test, mirror_crop_keypoints, mirror_poses
from mvn.datasets.h36m_labels import normalize_screen_coordinates
from mvn.datasets.h36m_meta import SKELETON
from mvn.inference import keypoints as kp
from mvn.inference.boxes import TORCHVISION_DETECTOR_FILE, TorchvisionDetector, box_from_keypoints, crop_from_box
from mvn.inference.locator import HeatmapPersonLocator
from mvn.inference.model import default_coco_weights, load_capf, load_heatmap_detector
from mvn.inference.smoothing import Tracks
from mvn.models.backbones import input_normalization
from mvn.utils.img import crop_image, crop_transform, transform_points


def pick_device(device):
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available')
    return torch.device(device)


class Pose3DEstimator:
    """``estimator(frame, boxes=None)`` -> list of people; ``estimator([frames], boxes=None)`` ->
    a list per frame; ``estimator.run(frames, ...)`` yields per frame over any iterable (videos).

    A person is a dict: 'box' [x0, y0, x1, y1] px; 'score' (the detector's, else the mean COCO
    keypoint score); 'keypoints_2d_coco' (17, 2) px and 'scores_2d_coco' (17,) (None when the
    user gave Human3.6M-ordered keypoints); 'keypoints_2d' (17, 2) px and 'scores_2d' (17,) in
    the Human3.6M-17 layout (``mvn.datasets.h36m_meta.JOINT_NAMES``); 'keypoints_3d' (17, 3)
    metres, pelvis at 0 (CA-PF's output minus its pelvis), camera axes (x right, y down, z forward); 'track' (video
    person id, else the index in the frame).

    checkpoint: CA-PF weights; coco_weights: the COCO HRNet file of the same width (default:
    data/pretrained/coco/); detector: 'auto' (torchvision's when TORCHVISION_DETECTOR_FILE
    exists, else heatmaps), 'torchvision', 'heatmaps'; max_people: keep the best N per frame.
    """

    def __init__(self, checkpoint, coco_weights=None, device='auto', flip_test=True, config=None, detector='auto',
                 max_people=None, batch_size=16, person_threshold=0.5, keypoint_threshold=0.2):
        self.device = pick_device(device)
        self.flip_test = flip_test
        self.max_people = max_people
        self.batch_size = batch_size
        self.model, cfg = load_capf(checkpoint, self.device, config)
        self.backbone_type = cfg.model.backbone.type
        self.crop_size = tuple(cfg.model.image_shape)
        self.skeleton = SKELETON
        self.heatmap_detector, self.shared_backbone = load_heatmap_detector(
            coco_weights or default_coco_weights(self.backbone_type), self.backbone_type, self.model.backbone,
            self.device)
        self.preparer = BatchPreparer(self.device, normalize=input_normalization(self.backbone_type),
                                      skeleton=SKELETON, crop_width=self.crop_size[0], flip_test=True)
        self.plain_preparer = BatchPreparer(self.device, normalize=self.preparer.normalize, skeleton=SKELETON,
                                            crop_width=self.crop_size[0])
        self.keypoint_threshold = keypoint_threshold
        if detector == 'torchvision' or (detector == 'auto' and TorchvisionDetector.available()):
            self.person_detector = TorchvisionDetector(TORCHVISION_DETECTOR_FILE, self.device, person_threshold)
        elif detector in ('auto', 'heatmaps'):
            self.person_detector = None
        else:
            raise ValueError("detector must be 'auto', 'torchvision' or 'heatmaps', got %r" % detector)
        self.locator = HeatmapPersonLocator(self.coco_keypoints, self.crop_size)

    # -- the networks on crops ----------------------------------------------------------------
    def _images(self, crops, flip):
        """uint8 BGR crops (B, H, W, 3) -> normalised RGB (B, H, W, 3), or (B, 2, H, W, 3) with the
        mirrored copies when ``flip``, exactly as the evaluation's batch preparation."""
        b, j = len(crops), self.skeleton.num_joints
        batch = (torch.from_numpy(np.ascontiguousarray(crops)), torch.zeros(b, 1, j, 3), torch.zeros(b, j, 2),
                 torch.zeros(b, j, 2))
        return (self.preparer if flip else self.plain_preparer)(batch)[0]

    @torch.no_grad()
    def _backbone(self, images, flip):
        """Backbone maps of the plain (and, with ``flip``, mirrored) crops: a list of 1 or 2 lists."""
        views = [images[:, 0], images[:, 1]] if flip else [images]
        return [self.model.backbone(v.permute(0, 3, 1, 2).contiguous()) for v in views]

    @torch.no_grad()
    def _heatmaps(self, images, features, flip):
        """(B, 17, h, w) numpy heatmaps, with HRNet's flip test when ``flip``."""
        views = [images[:, 0], images[:, 1]] if flip else [images]
        if self.shared_backbone:
            maps = [self.heatmap_detector.heatmaps(f) for f in features]
        else:
            maps = [self.heatmap_detector(v.permute(0, 3, 1, 2).contiguous()) for v in views]
        if flip:
            maps = [kp.merge_flipped_heatmaps(maps[0], maps[1], kp.coco_flip_permutation())]
        return maps[0].float().cpu().numpy()

    def coco_keypoints(self, frames, centers, scales, flip=None):
        """COCO-17 keypoints of crops: frames (list of BGR), per crop center, scale ->
        (keypoints (B, 17, 2) frame px, scores (B, 17)). Used by the heatmap locator."""
        flip = self.flip_test if flip is None else flip
        crops = np.stack([crop_image(f, c, s, self.crop_size) for f, c, s in zip(frames, centers, scales)])
        images = self._images(crops, flip)
        features = self._backbone(images, flip) if self.shared_backbone else None
        heatmaps = self._heatmaps(images, features, flip)
        return self._to_frame(heatmaps, centers, scales)

    @staticmethod
    def _to_frame(heatmaps, centers, scales):
        cells, scores = kp.decode_heatmaps(heatmaps)
        crop_px = cells * kp.HEATMAP_STRIDE
        frame_px = np.stack([transform_points(p, crop_transform(c, s, inverse=True))
                             for p, c, s in zip(crop_px, centers, scales)]) if len(cells) else cells
        return frame_px, scores

    @torch.no_grad()
    def _lift(self, features, keypoints_2d, keypoints_crop):
        """CA-PF's head on backbone maps: (B, 17, 2) normalised screen and crop-pixel keypoints
        -> (B, 17, 3) metres, with the evaluation's flip test."""
        kp2d = torch.as_tensor(keypoints_2d, device=self.device)
        crop = torch.as_tensor(keypoints_crop, device=self.device)
        inputs = [(kp2d, crop)]
        if self.flip_test:
            perm = self.preparer.flip_permutation
            inputs.append((mirror_poses(kp2d, perm), mirror_crop_keypoints(crop, self.crop_size[0], perm)))
        preds = []
        for maps, (k2, kc) in zip(features, inputs):
            out = self.model.volume_net(k2.float(), self.model.crop_to_grid(kc.float()), maps)
            preds.append(out if self.model.output_scale == 1.0 else out * self.model.output_scale)
        pred = merge_flip_test(preds[0], preds[1], self.preparer.flip_permutation) if self.flip_test else preds[0]
        pred = pred[:, 0].float().cpu().numpy()
        return pred - pred[:, self.skeleton.root:self.skeleton.root + 1]     # the pelvis exactly at 0

    # -- people -------------------------------------------------------------------------------
    def find_people(self, frame, previous=None):
        """Automatic person boxes of one frame: [(box, score)], best first (at most max_people).
        ``previous``: the last frame's boxes (the heatmap locator starts there)."""
        if self.person_detector is not None:
            found = self.person_detector(frame)
        else:
            found = self.locator(frame, previous[0] if previous else None, self.keypoint_threshold)
        return found[:self.max_people] if self.max_people else found

    def _process(self, frames, people, tracks=None, dt=None):
        """2D (unless given) and 3D of ``people``: a list per frame of dicts with 'box' and
        optionally 'keypoints_2d_coco' / 'keypoints_2d' (frame px); filled in place. With
        ``tracks`` the 2D keypoints are smoothed (in frame order) before they go into the 3D model."""
        flat = [(i, p) for i, ps in enumerate(people) for p in ps]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start:start + self.batch_size]
            centers, scales = zip(*(p.get('crop') or crop_from_box(p['box']) for _, p in chunk))
            crops = np.stack([crop_image(frames[i], c, s, self.crop_size) for (i, _), c, s in zip(chunk, centers, scales)])
            images = self._images(crops, self.flip_test)
            features = self._backbone(images, self.flip_test)
            needs_2d = [n for n, (_, p) in enumerate(chunk)
                        if p.get('keypoints_2d') is None and p.get('keypoints_2d_coco') is None]
            if needs_2d:
                heatmaps = self._heatmaps(images, features, self.flip_test)[needs_2d]
                coco, coco_scores = self._to_frame(heatmaps, [centers[n] for n in needs_2d],
                                                   [scales[n] for n in needs_2d])
                for n, pts, sc in zip(needs_2d, coco, coco_scores):
                    chunk[n][1].update(keypoints_2d_coco=pts, scores_2d_coco=sc)
            for i, p in chunk:
                if tracks is not None:
                    key = 'keypoints_2d_coco' if p.get('keypoints_2d_coco') is not None else 'keypoints_2d'
                    p[key] = tracks.smooth(p['track'], key, p[key], dt)
                self._complete_2d(p)
            k2d, kcrop = zip(*(self.model_inputs(frames[i].shape, p['keypoints_2d'], c, s)
                               for (i, p), c, s in zip(chunk, centers, scales)))
            poses = self._lift(features, np.stack(k2d), np.stack(kcrop))
            for (_, p), pose in zip(chunk, poses):
                p['keypoints_3d'] = pose

    def model_inputs(self, frame_shape, keypoints_px, center, scale):
        """CA-PF's 2D inputs from (17, 2) frame-pixel keypoints, as the labels hold them:
        (normalised screen coordinates x/w*2-1, y/w*2-h/w; crop pixels through the crop
        transform, float32)."""
        h, w = frame_shape[:2]
        keypoints_px = np.asarray(keypoints_px, np.float64)
        return (normalize_screen_coordinates(keypoints_px, w, h),
                transform_points(keypoints_px, crop_transform(center, scale, self.crop_size)).astype(np.float32))

    @staticmethod
    def _complete_2d(person):
        """Fills the Human3.6M keypoints from COCO ones, missing scores (1), and the person score."""
        if person.get('keypoints_2d') is None:
            if person.get('scores_2d_coco') is None:
                person['scores_2d_coco'] = np.ones(17)
            person['keypoints_2d'], person['scores_2d'] = kp.coco_to_h36m(person['keypoints_2d_coco'],
                                                                          person['scores_2d_coco'])
        person.setdefault('keypoints_2d_coco', None)
        person.setdefault('scores_2d_coco', None)
        if person.get('scores_2d') is None:
            person['scores_2d'] = np.ones(17)
        if person.get('score') is None:
            scores = person['scores_2d_coco'] if person['scores_2d_coco'] is not None else person['scores_2d']
            person['score'] = float(np.mean(scores))

    def __call__(self, frames, boxes=None, keypoints=None):
        single = isinstance(frames, np.ndarray) and frames.ndim == 3
        batch = [frames] if single else list(frames)
        if boxes is not None:
            boxes = [boxes] if single else boxes
            boxes = {i: b for i, b in enumerate(boxes)}
        if keypoints is not None:
            keypoints = {i: k for i, k in enumerate([keypoints] if single else keypoints)}
        results = list(self.run(batch, boxes=boxes, keypoints=keypoints))
        return results[0] if single else results

    def run(self, frames, boxes=None, keypoints=None, smooth=False, fps=30.0):
        """Yields the people of every frame of ``frames`` (an iterable of BGR arrays), in order.

        boxes: {frame index: [box, ...]} (frames absent: automatic); keypoints: {frame index:
        [{'keypoints_2d_coco' or 'keypoints_2d': (17, 2) px, optional scores, optional 'box'}]}
        (those frames use them instead of the heatmaps; no box: one around the keypoints).
        smooth: One-Euro filtering of boxes and 2D keypoints per tracked person (videos)."""
        tracks = Tracks() if smooth else None
        dt = 1.0 / (fps if fps and fps > 0 else 30.0)
        pending, previous = [], None
        for index, frame in enumerate(frames):
            people = self._people_of(index, frame, boxes, keypoints, previous)
            previous = [p['box'] for p in people] or None
            if tracks is not None:
                ids = tracks.assign([p['box'] for p in people])
                for p, t in zip(people, ids):
                    p['track'] = t
                    p['box'] = tracks.smooth(t, 'box', p['box'], dt)
            pending.append((frame, people))
            if sum(len(ps) for _, ps in pending) >= self.batch_size or len(pending) >= self.batch_size:
                yield from self._flush(pending, tracks, dt)
                pending = []
        yield from self._flush(pending, tracks, dt)

    def _people_of(self, index, frame, boxes, keypoints, previous):
        if keypoints is not None and index in keypoints:
            people = [dict(p) for p in keypoints[index]]
            for p in people:
                if p.get('box') is None:
                    pts = p.get('keypoints_2d_coco', p.get('keypoints_2d'))
                    sc = p.get('scores_2d_coco', p.get('scores_2d'))
                    p['box'] = box_from_keypoints(pts, np.ones(len(pts)) if sc is None else sc, -np.inf)
            return people
        if boxes is not None and index in boxes:
            return [{'box': np.asarray(b, np.float64), 'score': None} for b in boxes[index]]
        return [{'box': b, 'score': s} for b, s in self.find_people(frame, previous)]

    def _flush(self, pending, tracks, dt):
        if not pending:
            return
        frames = [f for f, _ in pending]
        people = [ps for _, ps in pending]
        self._process(frames, people, tracks, dt)
        for n, ps in enumerate(people):
            for k, p in enumerate(ps):
                p.setdefault('track', k)
            yield ps
