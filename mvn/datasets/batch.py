"""Batch preparation on the training device, as the official code does it.

A loader batch is (images uint8 (B, H, W, 3) BGR, joints_3d (B, 1, J, 3) metres, keypoints_2d
(B, J, 2) normalised screen coordinates, keypoints_2d_crop (B, J, 2) crop pixels). Prepared:
float32 RGB images normalised for the backbone, a 3D target relative to the skeleton's root, and
either a training flip (the whole batch, probability 0.5) or, for the flip test, a second
mirrored copy stacked on dim 1. Mirroring exchanges the skeleton's left and right joints.
Arithmetic happens in the loader's dtypes before the final cast, as in the official code.
"""
import torch


def root_relative(joints_3d, root=0):
    """(B, 1, J, 3): every joint minus the root joint, the root set to zero (a new tensor)."""
    out = joints_3d - joints_3d[:, :, root:root + 1]
    out[:, :, root] = 0
    return out


def swap_left_right(joints, flip_permutation):
    """Exchanges left and right joints along dim -2: out[..., j, :] = joints[..., perm[j], :]."""
    return joints[..., list(flip_permutation), :]


def mirror_poses(joints, flip_permutation):
    """Mirror of 2D screen or 3D camera poses (..., J, C): x -> -x, then left <-> right."""
    out = joints.clone()
    out[..., 0] *= -1
    return swap_left_right(out, flip_permutation)


def mirror_crop_keypoints(keypoints, crop_width, flip_permutation):
    """Mirror of crop-pixel keypoints (..., J, 2): x -> W - x - 1, then left <-> right."""
    out = keypoints.clone()
    out[..., 0] = crop_width - out[..., 0] - 1
    return swap_left_right(out, flip_permutation)


def mirror_images(images):
    """(..., H, W, 3) mirrored in width."""
    return torch.flip(images, [-2])


def merge_flip_test(pred, pred_mirrored, flip_permutation):
    """Average of a prediction and the mirrored-back prediction of the mirrored input, (B, 1, J, 3)."""
    return torch.cat((pred, mirror_poses(pred_mirrored, flip_permutation)), dim=1).mean(dim=1, keepdim=True)


class BatchPreparer:
    """Moves a loader batch to ``device`` and prepares it (see the module docstring).

    ``normalize``: the backbone's input normalisation, RGB in [0, 1] -> its input
    (``mvn.models.backbones.input_normalization``); ``skeleton``: the dataset's joint layout.
    ``train``: flip the whole batch with probability 0.5, drawn from a generator seeded with
    ``seed`` so a run is reproducible. ``flip_test`` (evaluation): every returned tensor gains a
    dim 1 of size 2, [original, mirrored].
    """

    def __init__(self, device, *, normalize, skeleton, crop_width, train=False, flip_test=False, seed=0):
        self.device = torch.device(device)
        self.normalize = normalize
        self.skeleton = skeleton
        self.flip_permutation = skeleton.flip_permutation()
        self.crop_width = crop_width
        self.train = train
        self.flip_test = flip_test and not train
        self.generator = torch.Generator().manual_seed(seed)

    def to_device(self, tensor):
        non_blocking = self.device.type == 'cuda'
        return tensor.to(self.device, non_blocking=non_blocking)

    def mirror(self, images, keypoints_2d, keypoints_crop):
        perm = self.flip_permutation
        return (mirror_images(images), mirror_poses(keypoints_2d, perm),
                mirror_crop_keypoints(keypoints_crop, self.crop_width, perm))

    def merge_flip_test(self, pred, pred_mirrored):
        return merge_flip_test(pred, pred_mirrored, self.flip_permutation)

    def __call__(self, batch):
        images, joints_3d, keypoints_2d, keypoints_crop = (self.to_device(t) for t in batch)
        images = self.normalize(torch.flip(images, [-1]) / 255.0)          # BGR -> RGB in [0, 1]
        joints_3d = root_relative(joints_3d, self.skeleton.root)
        if self.train and torch.rand((), generator=self.generator).item() < 0.5:
            images, keypoints_2d, keypoints_crop = self.mirror(images, keypoints_2d, keypoints_crop)
            joints_3d = mirror_poses(joints_3d, self.flip_permutation)
        if self.flip_test:
            mirrored = self.mirror(images, keypoints_2d, keypoints_crop)
            images, keypoints_2d, keypoints_crop = (torch.stack([x, m], dim=1) for x, m in
                                                    zip((images, keypoints_2d, keypoints_crop), mirrored))
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
