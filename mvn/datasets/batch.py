"""Batch preparation on the training device, as the official code does it.

A loader batch is (images uint8 (B, H, W, 3) BGR, joints_3d (B, 1, J, 3) metres, keypoints_2d
(B, J, 2) normalised screen coordinates, keypoints_2d_crop (B, J, 2) crop pixels). Prepared:
float32 RGB images normalised for the backbone, a root-relative 3D target, and either a training
flip (the whole batch, probability 0.5) or, for the flip test, a second mirrored copy stacked on
dim 1. Arithmetic happens in the loader's dtypes before the final cast, as in the official code.
"""
import torch

from mvn.datasets.h36m_meta import JOINTS_LEFT, JOINTS_RIGHT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CPN_PIXEL_MEANS = (122.7717, 115.9465, 102.9801)    # RGB, 0..255
_SWAP_FROM = JOINTS_RIGHT + JOINTS_LEFT
_SWAP_TO = JOINTS_LEFT + JOINTS_RIGHT


def normalize_images(images, backbone):
    """uint8 BGR (B, H, W, 3) -> float32 RGB: ImageNet mean/std (HRNet) or CPN's mean only."""
    images = torch.flip(images, [-1])
    if backbone == 'cpn':
        mean = torch.tensor(CPN_PIXEL_MEANS, device=images.device) / 255.0
        return images / 255.0 - mean
    mean = torch.tensor(IMAGENET_MEAN, device=images.device)
    std = torch.tensor(IMAGENET_STD, device=images.device)
    return (images / 255.0 - mean) / std


def root_relative(joints_3d):
    """(B, 1, J, 3): joints 1.. minus joint 0, joint 0 set to zero (a new tensor)."""
    out = joints_3d.clone()
    out[:, :, 1:] -= out[:, :, :1]
    out[:, :, 0] = 0
    return out


def swap_left_right(joints):
    """Exchanges left and right joints along dim -2 (a new tensor)."""
    out = joints.clone()
    out[..., _SWAP_TO, :] = joints[..., _SWAP_FROM, :]
    return out


def mirror_poses(joints):
    """Mirror of 2D screen or 3D camera poses (..., J, C): x -> -x, then left <-> right."""
    out = joints.clone()
    out[..., 0] *= -1
    return swap_left_right(out)


def mirror_crop_keypoints(keypoints, crop_width):
    """Mirror of crop-pixel keypoints (..., J, 2): x -> W - x - 1, then left <-> right."""
    out = keypoints.clone()
    out[..., 0] = crop_width - out[..., 0] - 1
    return swap_left_right(out)


def mirror_images(images):
    """(..., H, W, 3) mirrored in width."""
    return torch.flip(images, [-2])


def merge_flip_test(pred, pred_mirrored):
    """Average of a prediction and the mirrored-back prediction of the mirrored input, (B, 1, J, 3)."""
    return torch.cat((pred, mirror_poses(pred_mirrored)), dim=1).mean(dim=1, keepdim=True)


class BatchPreparer:
    """Moves a loader batch to ``device`` and prepares it (see the module docstring).

    ``train``: flip the whole batch with probability 0.5, drawn from a generator seeded with
    ``seed`` so a run is reproducible. ``flip_test`` (evaluation): every returned tensor gains a
    dim 1 of size 2, [original, mirrored].
    """

    def __init__(self, backbone, device, train=False, flip_test=False, seed=0, crop_width=192):
        self.backbone = backbone
        self.device = torch.device(device)
        self.train = train
        self.flip_test = flip_test and not train
        self.crop_width = crop_width
        self.generator = torch.Generator().manual_seed(seed)

    def to_device(self, tensor):
        non_blocking = self.device.type == 'cuda'
        return tensor.to(self.device, non_blocking=non_blocking)

    def __call__(self, batch):
        images, joints_3d, keypoints_2d, keypoints_crop = (self.to_device(t) for t in batch)
        images = normalize_images(images, self.backbone)
        joints_3d = root_relative(joints_3d)
        if self.train and torch.rand((), generator=self.generator).item() < 0.5:
            images = mirror_images(images)
            keypoints_2d = mirror_poses(keypoints_2d)
            keypoints_crop = mirror_crop_keypoints(keypoints_crop, self.crop_width)
            joints_3d = mirror_poses(joints_3d)
        if self.flip_test:
            images = torch.stack([images, mirror_images(images)], dim=1)
            keypoints_2d = torch.stack([keypoints_2d, mirror_poses(keypoints_2d)], dim=1)
            keypoints_crop = torch.stack([keypoints_crop, mirror_crop_keypoints(keypoints_crop, self.crop_width)], dim=1)
        return images.float(), joints_3d.float(), keypoints_2d.float(), keypoints_crop.float()


class Prefetcher:
    """Iterates prepared batches. On CUDA the next batch is copied and prepared on a side stream
    while the current one is being used; elsewhere batches are prepared in turn."""

    def __init__(self, loader, preparer: BatchPreparer):
        self.loader = loader
        self.preparer = preparer

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        if self.preparer.device.type != 'cuda':
            for batch in self.loader:
                yield self.preparer(batch)
            return
        stream = torch.cuda.Stream(self.preparer.device)
        batches = iter(self.loader)

        def preload():
            batch = next(batches, None)
            if batch is None:
                return None
            with torch.cuda.stream(stream):
                return self.preparer(batch)

        upcoming = preload()
        while upcoming is not None:
            current_stream = torch.cuda.current_stream(self.preparer.device)
            current_stream.wait_stream(stream)
            for tensor in upcoming:
                tensor.record_stream(current_stream)
            batch, upcoming = upcoming, preload()
            yield batch
