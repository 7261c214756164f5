#!/usr/bin/env python3
"""Frames per second of in-the-wild inference, stage by stage, and of the rendering.

Builds CA-PF with HRNet-32 (random weights in the released layout; the speed does not depend on
the values), writes its checkpoint and a COCO file to a temporary folder, and times on synthetic
1000x1000 frames:

* crop          frame -> 192x256 crop (cv2.warpAffine)
* backbone      HRNet on the crops (with the flip test: the crop and its mirror)
* 2D            heatmap layer + HRNet decoding + COCO -> Human3.6M
* 3D            CA-PF's head (with the flip test)
* pipeline      Pose3DEstimator on whole frames with a given box, and with automatic boxes
                (the heatmap locator: two more backbone passes per frame)
* render        one 1000x500 picture (frame with its 2D skeleton beside the 3D view), on one core

    python bench/bench_inference.py                 # HRNet-32, batch 1 and 16
    python bench/bench_inference.py --quick         # a tiny HRNet, few repetitions (checks it runs)
"""
import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

STANDING = np.array([[0, 0, 0], [-0.13, 0, 0], [-0.14, 0.45, 0.02], [-0.14, 0.88, 0.05], [0.13, 0, 0],
                     [0.14, 0.45, 0.02], [0.14, 0.88, 0.05], [0, -0.23, 0.01], [0, -0.48, 0.02], [0, -0.58, -0.06],
                     [0, -0.7, 0], [0.18, -0.47, 0.02], [0.22, -0.22, 0.03], [0.24, 0.02, -0.02],
                     [-0.18, -0.47, 0.02], [-0.22, -0.22, 0.03], [-0.24, 0.02, -0.02]])


def timed(fn, repeat):
    fn()                                   # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def write_weights(folder, backbone):
    import copy
    from easydict import EasyDict
    from mvn import registry
    from mvn.models.conpose import CA_PF
    from mvn.utils.cfg import DEFAULTS
    cfg = EasyDict(copy.deepcopy(DEFAULTS))
    cfg.model.backbone.type = backbone
    cfg.model.poseformer.base_dim = registry.BACKBONES[backbone].fixed['model.poseformer.base_dim']
    if backbone == 'hrnet_tiny':
        cfg.model.poseformer.update(embed_dim_ratio=16, depth=2)
    model = CA_PF(cfg)
    checkpoint, coco = os.path.join(folder, 'capf.bin'), os.path.join(folder, 'coco.pth')
    torch.save({'model': model.state_dict()}, checkpoint)
    width = cfg.model.poseformer.base_dim
    torch.save(dict(model.backbone.state_dict(), **{'final_layer.weight': torch.randn(17, width, 1, 1) * 0.1,
                                                    'final_layer.bias': torch.zeros(17)}), coco)
    return checkpoint, coco


def bench_stages(est, frame, box, batch, repeat):
    from mvn.inference import keypoints as kp
    from mvn.inference.boxes import crop_from_box
    from mvn.utils.img import crop_image
    center, scale = crop_from_box(box)
    crop_s = timed(lambda: crop_image(frame, center, scale), repeat * 5)
    crops = np.stack([crop_image(frame, center, scale)] * batch)
    images = est._images(crops, est.flip_test)
    backbone_s = timed(lambda: est._backbone(images, est.flip_test), repeat)
    features = est._backbone(images, est.flip_test)

    def two_d():
        heatmaps = est._heatmaps(images, features, est.flip_test)
        cells, scores = kp.decode_heatmaps(heatmaps)
        return kp.coco_to_h36m(cells * 4, scores)
    two_d_s = timed(two_d, repeat)
    k2d = np.zeros((batch, 17, 2), np.float32)
    kcrop = np.full((batch, 17, 2), 96.0, np.float32)
    head_s = timed(lambda: est._lift(features, k2d, kcrop), repeat)
    return {'crop': crop_s, 'backbone': backbone_s / batch, '2D': two_d_s / batch, '3D': head_s / batch}


def bench_render(frame, repeat):
    from mvn.inference.runner import Renderer
    cv2.setNumThreads(1)
    renderer = Renderer(500)
    people = [{'box': np.array([300, 150, 700, 950.]), 'keypoints_2d': STANDING[:, :2] * 800 + [500, 450],
               'keypoints_3d': STANDING}]
    picture = renderer(frame, people)
    seconds = timed(lambda: renderer(frame, people), repeat)
    return seconds, picture.shape


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='tiny HRNet, few repetitions')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch CPU threads')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mvn.inference import Pose3DEstimator
    backbone = 'hrnet_tiny' if args.quick else 'hrnet_32'
    repeat = 2 if args.quick else 10
    frame = (np.random.RandomState(0).rand(1000, 1000, 3) * 255).astype(np.uint8)
    box = [300, 150, 700, 950]
    print('device %s, %d torch threads, backbone %s (random weights), 1000x1000 frames' % (args.device, args.threads,
                                                                                           backbone))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, coco = write_weights(folder, backbone)
        for flip in (True, False):
            est = Pose3DEstimator(checkpoint, coco_weights=coco, device=args.device, flip_test=flip,
                                  keypoint_threshold=-np.inf)
            for batch in (1, 16):
                stages = bench_stages(est, frame, box, batch, repeat)
                print('flip test %-3s batch %2d: ' % ('on' if flip else 'off', batch) +
                      ', '.join('%s %.1f/s' % (name, 1 / s) for name, s in stages.items()) + ' (per crop)')
            given = timed(lambda: est(frame, boxes=[box]), repeat)
            automatic = timed(lambda: est(frame), repeat)
            print('flip test %-3s pipeline: %.2f frames/s with a given box, %.2f frames/s with automatic boxes'
                  % ('on' if flip else 'off', 1 / given, 1 / automatic))
    seconds, shape = bench_render(frame, 5 if args.quick else 200)
    print('render: %.0f frames/s at %dx%d (one core; target >= 50)' % (1 / seconds, shape[1], shape[0]))


if __name__ == '__main__':
    main()
