"""H36M-Toolbox end to end on raw synthetic data: videos -> frames -> labels."""
import ast
import os
import pickle
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mvn.datasets import h36m_meta as meta
from mvn.datasets.synthetic import sequence_ground_truth
from mvn.utils.img import crop_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLBOX = os.path.join(REPO, 'H36M-Toolbox')


def run_tool(script, cwd, *args):
    return subprocess.run([sys.executable, os.path.join(TOOLBOX, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def toolbox_run(raw_data, tmp_path_factory):
    """A copy of the raw data with frames and labels made by the two scripts, run as the
    official README says: from the toolbox folder, with no arguments."""
    root = tmp_path_factory.mktemp('toolbox') / 'H36M-Toolbox'
    shutil.copytree(raw_data, root)
    frames = run_tool('video_to_images.py', root)
    labels = run_tool('generate_labels_h36m.py', root)
    assert frames.returncode == 0, frames.stderr
    assert labels.returncode == 0, labels.stderr
    with open(root / 'h36m_train.pkl', 'rb') as f:
        train = pickle.load(f)
    with open(root / 'h36m_validation.pkl', 'rb') as f:
        val = pickle.load(f)
    return {'root': root, 'frames': frames.stdout, 'labels': labels.stdout, 'train': train, 'val': val}


def test_frames_have_the_official_names(toolbox_run):
    folder = toolbox_run['root'] / 'images' / 's_01_act_02_subact_01_ca_01'
    assert sorted(os.listdir(folder)) == ['s_01_act_02_subact_01_ca_01_%06d.jpg' % i for i in range(1, 5)]
    assert cv2.imread(str(folder / 's_01_act_02_subact_01_ca_01_000001.jpg')).shape == (1002, 1000, 3)


def test_labels_agree_with_the_generator_ground_truth(toolbox_run):
    assert len(toolbox_run['train']) == 1 * 2 * 2 * 2 * 4 == len(toolbox_run['val'])
    assert {e['subject'] for e in toolbox_run['train']} == {1} and {e['subject'] for e in toolbox_run['val']} == {9}
    for entry in toolbox_run['train'][::5] + toolbox_run['val'][::7]:
        s, a, sa, c, i = entry['subject'], entry['action'], entry['subaction'], entry['camera_id'] + 1, entry['image_id']
        # the generator made 4 frames, and 2 more CPN frames for camera 1 (same call as here)
        joints_cam, joints_2d, cpn = sequence_ground_truth(s, a, sa, c, 6 if c == 1 else 4)
        truth_3d, truth_2d, truth_cpn = joints_cam[i - 1], joints_2d[i - 1], cpn[i - 1]
        width, height = (1000, 1002) if c in (1, 4) else (1000, 1000)
        assert entry['image'] == 's_%02d_act_%02d_subact_%02d_ca_%02d/s_%02d_act_%02d_subact_%02d_ca_%02d_%06d.jpg' % (
            s, a, sa, c, s, a, sa, c, i)
        assert np.allclose(entry['joints_3d'], truth_3d / 1000.0, atol=1e-6)                # metres
        assert np.allclose(entry['joints_2d_gt'], truth_2d / width * 2 - [1, height / width], atol=1e-6)
        assert np.allclose(entry['joints_2d_cpn'], truth_cpn / width * 2 - [1, height / width], atol=1e-6)
        # the box by hand: root -/+ (1000, 900) / (1000, 1100) mm, pinhole projection
        cam = meta.CAMERAS[(s, c)]
        corners = []
        for dx, dy in ((-1000, -900), (1000, 1100)):
            x, y, z = truth_3d[0] + [dx, dy, 0]
            corners += [cam.f[0] * x / z + cam.c[0], cam.f[1] * y / z + cam.c[1]]
        assert np.allclose(entry['box'], corners, rtol=1e-5)
        assert np.allclose(entry['center'], [(corners[0] + corners[2]) / 2, (corners[1] + corners[3]) / 2], rtol=1e-5)
        scale_px = (corners[2] - corners[0])
        # crop keypoints: uniform scale (191 / (s - 1)) about the box centre
        expected_crop = (truth_2d - entry['center']) * 191 / (scale_px - 1) + [95.5, 127.5]
        assert np.allclose(entry['joints_2d_gt_crop'], expected_crop, atol=2e-3)
        assert entry['nposes'] == 4 and entry['camera_id'] == c - 1 and entry['source'] == 'h36m'


def test_cpn_detections_longer_than_the_mocap_are_truncated(toolbox_run):
    first_camera = [e for e in toolbox_run['train'] if e['camera_id'] == 0]
    assert max(e['image_id'] for e in first_camera) == 4 and all(e['nposes'] == 4 for e in first_camera)


def test_a_dot_at_a_keypoint_lands_at_its_crop_coordinate(toolbox_run):
    entry = toolbox_run['val'][3]
    width, height = 1000, 1002 if entry['camera_id'] in (0, 3) else 1000
    frame = np.zeros((height, width, 3), np.uint8)
    pixels = (entry['joints_2d_gt'] + [1, height / width]) * width / 2           # undo the normalisation
    for joint in (0, 3, 10, 16):
        frame[:] = 0
        x, y = int(round(pixels[joint, 0])), int(round(pixels[joint, 1]))
        frame[y, x] = 255
        crop = crop_image(cv2.GaussianBlur(frame, (5, 5), 1.0), entry['center'], entry['scale'])
        row, col = np.unravel_index(crop[..., 0].astype(float).argmax(), crop.shape[:2])
        assert abs(col - entry['joints_2d_gt_crop'][joint, 0]) <= 1.0
        assert abs(row - entry['joints_2d_gt_crop'][joint, 1]) <= 1.0


def test_missing_sequences_are_summarised_not_fatal(toolbox_run):
    assert 'skipped or without frames' in toolbox_run['labels']
    assert 'missing ' in toolbox_run['labels'] and 'Greeting' in toolbox_run['labels']
    assert 'videos missing' in toolbox_run['frames']


def test_scripts_are_idempotent_and_resume(toolbox_run):
    root = toolbox_run['root']
    again = run_tool('generate_labels_h36m.py', root)
    assert again.returncode == 0 and 'nothing to do' in again.stdout
    shutil.rmtree(root / 'images' / 's_09_act_12_subact_02_ca_02')
    resumed = run_tool('video_to_images.py', root)
    assert resumed.returncode == 0 and resumed.stdout.startswith('1 sequences extracted, 15 already done')
    assert len(os.listdir(root / 'images' / 's_09_act_12_subact_02_ca_02')) == 4
    forced = run_tool('generate_labels_h36m.py', root, '--force')
    assert forced.returncode == 0 and 'wrote 32 training frames' in forced.stdout


def test_help_and_unreadable_cdf(toolbox_run, tmp_path):
    for script in ('video_to_images.py', 'generate_labels_h36m.py'):
        result = run_tool(script, tmp_path, '--help')
        assert result.returncode == 0 and 'usage:' in result.stdout
    root = tmp_path / 'broken'
    shutil.copytree(toolbox_run['root'], root, ignore=shutil.ignore_patterns('*.pkl'))
    victim = root / 'extracted' / 'S1' / 'Poses_D2_Positions' / 'Directions 1.54138969.cdf'
    victim.write_bytes(b'not a CDF')
    result = run_tool('generate_labels_h36m.py', root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith('error: cannot read CDF file')
    assert 'Directions 1.54138969.cdf' in result.stderr


def test_ffmpeg_backend_gets_the_official_arguments(raw_data, tmp_path):
    # A stand-in ffmpeg (this machine has none) that records its arguments and decodes with OpenCV.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'ffmpeg_args.txt'
    fake = bin_dir / 'ffmpeg'
    fake.write_text('#!%s\n' % sys.executable + '\n'.join([
        'import sys, cv2',
        'open(%r, "a").write(repr(sys.argv[1:]) + "\\n")' % str(log),
        'video, pattern = sys.argv[sys.argv.index("-i") + 1], sys.argv[-1]',
        'capture, i = cv2.VideoCapture(video), 0',
        'while True:',
        '    ok, frame = capture.read()',
        '    if not ok: break',
        '    i += 1',
        '    cv2.imwrite(pattern % i, frame)',
    ]) + '\n')
    fake.chmod(0o755)
    root = tmp_path / 'tb'
    shutil.copytree(raw_data / 'extracted', root / 'extracted')
    env = dict(os.environ, PATH=str(bin_dir) + os.pathsep + os.environ['PATH'])
    result = subprocess.run([sys.executable, os.path.join(TOOLBOX, 'video_to_images.py'), '--root', str(root),
                             '--subjects', '9'], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('8 sequences extracted')
    calls = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    assert len(calls) == 8
    args = calls[0]
    assert args[args.index('-qscale:v') + 1] == '3' and args[-1].endswith('_%06d.jpg')
    assert os.path.basename(args[-1]).startswith('s_09_act_')
    assert sorted(os.listdir(root / 'images' / 's_09_act_02_subact_01_ca_01')) == [
        's_09_act_02_subact_01_ca_01_%06d.jpg' % i for i in range(1, 5)]
