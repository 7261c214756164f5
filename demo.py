"""3D human poses in your own images, folders of images and videos, with a CA-PF checkpoint.

$ python demo.py --input photo.jpg --checkpoint checkpoint/best_epoch_hrnet_32.bin --output out/
$ python demo.py --input clip.mp4 --checkpoint checkpoint/best_epoch_hrnet_32.bin --output out/ --gif
$ python demo.py --input frames/ --checkpoint ... --boxes boxes.json --output out/

Writes out/results.json ({"frames": [{"frame": i, "people": [{"box", "score", "keypoints_2d_coco",
"keypoints_2d", "keypoints_3d"}]}]}: pixels, metres), a PNG per image and an MP4 per video (the
frame with its 2D skeleton beside a 3D view). Weights: the CA-PF checkpoint (--checkpoint) and the
COCO HRNet file of the same width (--coco-weights) for the 2D keypoints. See the README, "In-the-wild
inference (demo.py)".
"""
import argparse
import os
import sys

DEFAULT_COCO = 'data/pretrained/coco/pose_hrnet_w32_256x192.pth'


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be at least 1, got %d' % value)
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='an image, a folder of images, or a video')
    parser.add_argument('--checkpoint', default='checkpoint/best_epoch_hrnet_32.bin', help='CA-PF weights')
    parser.add_argument('--coco-weights',
                        help="COCO HRNet weights of the checkpoint's width, for the 2D keypoints (default: "
                             "%s, or the w48 file for HRNet-48)" % DEFAULT_COCO)
    parser.add_argument('--config', help='an experiment YAML, for settings the checkpoint does not tell')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    people = parser.add_mutually_exclusive_group()
    people.add_argument('--box', help='x0,y0,x1,y1: the person box in every frame (pixels)')
    people.add_argument('--boxes', help='JSON file of person boxes per frame')
    parser.add_argument('--keypoints', help='JSON/NPZ file of your own 2D keypoints (COCO or Human3.6M order); '
                                            'then the COCO weights are needed only for frames it leaves out')
    parser.add_argument('--max-people', type=positive, help='at most N people per frame (the best first)')
    parser.add_argument('--detector', default='auto', choices=['auto', 'torchvision', 'heatmaps'],
                        help='automatic boxes: torchvision Faster R-CNN when its weights are in data/pretrained/ '
                             '(auto), or one person located from HRNet heatmaps')
    parser.add_argument('--no-flip-test', action='store_true', help='no flip test (about twice as fast)')
    parser.add_argument('--no-smooth', action='store_true', help='videos: no One-Euro smoothing of boxes and keypoints')
    parser.add_argument('--no-render', action='store_true', help='results.json only')
    parser.add_argument('--gif', action='store_true', help='videos: also an animated GIF')
    parser.add_argument('--npz', action='store_true', help='also results.npz: the results as arrays (long videos)')
    parser.add_argument('--batch-size', type=positive, default=16, help='crops per network pass')
    parser.add_argument('--output', default='out/', help='output folder (default out/)')
    return parser.parse_args(argv)


def main(args):
    from mvn.inference import Pose3DEstimator, runner
    from mvn.inference.boxes import load_boxes_file, parse_box
    from mvn.inference.media import load_keypoints_file
    boxes = runner.SameForEveryFrame([parse_box(args.box)]) if args.box else \
        load_boxes_file(args.boxes) if args.boxes else None
    keypoints = load_keypoints_file(args.keypoints) if args.keypoints else None
    # With --keypoints the COCO file is needed only for frames the keypoints file leaves out.
    heatmaps = not (keypoints and not args.coco_weights and not os.path.isfile(DEFAULT_COCO))
    estimator = Pose3DEstimator(args.checkpoint, coco_weights=args.coco_weights, device=args.device,
                                flip_test=not args.no_flip_test, config=args.config, detector=args.detector,
                                max_people=args.max_people, batch_size=args.batch_size, heatmaps=heatmaps)
    path = runner.run(estimator, args.input, args.output, boxes=boxes, keypoints=keypoints,
                      smooth=not args.no_smooth, render=not args.no_render, gif=args.gif, npz=args.npz)
    print('wrote %s' % path)


def cli(argv=None):
    """main() with one-line errors (naming the file or value) and a non-zero exit."""
    args = parse_args(argv)
    from mvn.inference.boxes import BoxError
    from mvn.inference.media import InputError
    from mvn.models.weights import WeightsError
    from mvn.utils.cfg import ConfigError
    from mvn.utils.monitor import error_line
    try:
        main(args)
    except (InputError, BoxError, WeightsError, ConfigError, OSError) as e:
        print('error: %s' % error_line(e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


if __name__ == '__main__':
    cli()
