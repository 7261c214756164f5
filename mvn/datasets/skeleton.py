"""A dataset's joint layout: names, root, left/right pairs and the kinematic tree.

Batch preparation (flips, the root-relative target), the flip test, drawing and the synthetic
generators read it from the dataset class (``DatasetClass.skeleton``), never from constants.
"""
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Skeleton:
    joint_names: Tuple[str, ...]
    root: int                       # the joint the 3D target is relative to
    left: Tuple[int, ...]           # left[i] and right[i] swap places in a mirror image
    right: Tuple[int, ...]
    parents: Tuple[int, ...]        # parent of every joint, -1 for the root (drawing, motion)

    def __post_init__(self):
        for name in ('joint_names', 'left', 'right', 'parents'):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        n = len(self.joint_names)
        if len(self.parents) != n:
            raise ValueError('skeleton: %d joint names but %d parents' % (n, len(self.parents)))
        if not 0 <= self.root < n or self.parents[self.root] != -1:
            raise ValueError('skeleton: root %d must be a joint whose parent is -1' % self.root)
        if len(self.left) != len(self.right) or set(self.left) & set(self.right):
            raise ValueError('skeleton: left %s and right %s must be disjoint pairs' % (self.left, self.right))
        if not all(0 <= j < n for j in self.left + self.right) or len(set(self.left + self.right)) != 2 * len(self.left):
            raise ValueError('skeleton: left/right joints must be distinct joints of the %d' % n)
        if any(p != -1 and not 0 <= p < n for p in self.parents):
            raise ValueError('skeleton: parents must be joints or -1, got %s' % (self.parents,))

    @property
    def num_joints(self):
        return len(self.joint_names)

    def flip_permutation(self):
        """perm with mirrored[..., j, :] = x[..., perm[j], :]: left and right joints exchanged."""
        perm = list(range(self.num_joints))
        for left, right in zip(self.left, self.right):
            perm[left], perm[right] = right, left
        return perm
