"""demo.py in-process: an image, a folder and a short video through the CLI (results.json schema,
pictures, the output video's frame count, rate and size), boxes and keypoints files, and the
robustness cases (grey, RGBA, 16-bit, EXIF rotation, tiny and huge frames, nobody, unreadable)."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

import demo
from mvn.inference import Pose3DEstimator
from mvn.inference.media import InputError, load_keypoints_file, read_image, to_bgr8
from mvn.inference.runner import render_height
from tests.inference_helpers import write_weights


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    checkpoint, coco, _ = write_weights(tmp_path_factory.mktemp('weights'))
    return checkpoint, coco


def noise(h, w, seed=0):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def run_demo(weights, *args):
    checkpoint, coco = weights
    demo.cli(['--checkpoint', checkpoint, '--coco-weights', coco, '--device', 'cpu', *map(str, args)])


def fails(capsys, weights, *args):
    with pytest.raises(SystemExit) as stop:
        run_demo(weights, *args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]       # (a progress bar may come before it)
    assert stop.value.code == 1 and last.startswith('error: ') and 'Traceback' not in err
    return last


def check_schema(results, n_frames):
    assert [f['frame'] for f in results['frames']] == list(range(n_frames))
    for entry in results['frames']:
        assert set(entry) == {'frame', 'people'}
        for person in entry['people']:
            assert set(person) == {'box', 'score', 'keypoints_2d_coco', 'keypoints_2d', 'keypoints_3d'}
            assert len(person['box']) == 4 and isinstance(person['score'], float)
            assert np.shape(person['keypoints_2d']) == (17, 2) and np.shape(person['keypoints_3d']) == (17, 3)
            assert person['keypoints_2d_coco'] is None or np.shape(person['keypoints_2d_coco']) == (17, 2)


def test_an_image_gives_results_and_a_picture(weights, tmp_path):
    cv2.imwrite(str(tmp_path / 'photo.jpg'), noise(240, 320))
    run_demo(weights, '--input', tmp_path / 'photo.jpg', '--box', '40,20,200,230', '--output', tmp_path / 'out')
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    check_schema(results, 1)
    assert results['frames'][0]['people'][0]['box'] == [40, 20, 200, 230]
    picture = cv2.imread(str(tmp_path / 'out' / 'photo.png'))
    assert picture.shape == (360, 480 + 360, 3)       # the frame at 360 px high beside a 360 x 360 view


def test_a_folder_of_unusual_images(weights, tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a_grey.png'), noise(100, 80)[..., 0])
    rgba = np.concatenate([noise(90, 120, 1), np.full((90, 120, 1), 128, np.uint8)], axis=2)
    cv2.imwrite(str(folder / 'b_rgba.png'), rgba)
    cv2.imwrite(str(folder / 'c_16bit.png'), (noise(60, 50, 2).astype(np.uint16) * 257))
    cv2.imwrite(str(folder / 'd_tiny.jpg'), noise(6, 5, 3))
    (folder / 'notes.txt').write_text('not an image')
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps([[[10, 10, 70, 90]], [], [[5, 5, 40, 55]], [[0, 0, 5, 6]]]))
    run_demo(weights, '--input', folder, '--boxes', boxes, '--output', tmp_path / 'out')
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    check_schema(results, 4)
    assert results['files'] == ['a_grey.png', 'b_rgba.png', 'c_16bit.png', 'd_tiny.jpg']
    assert [len(f['people']) for f in results['frames']] == [1, 0, 1, 1]      # nobody in b: recorded empty
    for name, h in [('a_grey', 100), ('b_rgba', 90), ('c_16bit', 60), ('d_tiny', 6)]:
        assert cv2.imread(str(tmp_path / 'out' / (name + '.png'))).shape[0] == render_height(h)


def test_a_video_gives_an_mp4_of_the_same_frames_at_its_rate(weights, tmp_path):
    path = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 12.0, (160, 120))
    for i in range(3):
        writer.write(noise(120, 160, i))
    writer.release()
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'frames': [{'frame': i, 'boxes': [] if i == 1 else [[30 + i, 20, 100, 115]]}
                                            for i in range(3)]}))
    run_demo(weights, '--input', path, '--boxes', boxes, '--output', tmp_path / 'out', '--gif', '--npz')
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    check_schema(results, 3)
    assert [len(f['people']) for f in results['frames']] == [1, 0, 1]   # the video goes on past nobody
    assert results['fps'] == 12.0
    video = cv2.VideoCapture(str(tmp_path / 'out' / 'clip.mp4'))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 3 and video.get(cv2.CAP_PROP_FPS) == 12.0
    # 160x120 frames shown 360 high, beside a 360 x 360 view
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (480 + 360, 360)
    assert Image.open(tmp_path / 'out' / 'clip.gif').n_frames == 3
    arrays = np.load(tmp_path / 'out' / 'results.npz')
    assert arrays['frame'].tolist() == [0, 2] and int(arrays['frame_count']) == 3
    people = [p for f in results['frames'] for p in f['people']]
    np.testing.assert_allclose(arrays['keypoints_3d'], [p['keypoints_3d'] for p in people], atol=1e-5)
    np.testing.assert_allclose(arrays['box'], [p['box'] for p in people], atol=1e-3)


def test_unreadable_inputs_and_missing_weights_are_one_line_errors(weights, tmp_path, capsys):
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    assert 'broken.jpg' in fails(capsys, weights, '--input', tmp_path / 'broken.jpg', '--output', tmp_path / 'o')
    (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42 garbage' * 10)
    assert 'broken.mp4' in fails(capsys, weights, '--input', tmp_path / 'broken.mp4', '--output', tmp_path / 'o')
    assert 'input not found' in fails(capsys, weights, '--input', tmp_path / 'nothing.jpg', '--output', tmp_path / 'o')
    err = fails(capsys, (str(tmp_path / 'no.bin'), weights[1]), '--input', tmp_path / 'broken.jpg')
    assert 'CA-PF checkpoint file not found' in err and 'no.bin' in err
    err = fails(capsys, (weights[0], str(tmp_path / 'no_coco.pth')), '--input', tmp_path / 'broken.jpg')
    assert 'no_coco.pth' in err and 'data/pretrained/coco' in err
    assert '--box' in fails(capsys, weights, '--input', tmp_path / 'broken.jpg', '--box', '1,2')
    assert not (tmp_path / 'o' / 'results.json').exists()


def test_image_reading_robustness(tmp_path):
    # EXIF orientation 6 (rotate 90 degrees clockwise to view): a 40x20 picture with a white left
    # strip shows as 20 wide, 40 high, with the strip on top.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / 'phone.jpg', exif=exif.tobytes(), quality=95)
    upright = read_image(str(tmp_path / 'phone.jpg'))
    assert upright.shape == (40, 20, 3)
    assert upright[:8].mean() > 200 and upright[12:].mean() < 50
    assert to_bgr8(np.full((2, 2), 65535, np.uint16)).tolist() == [[[255] * 3] * 2] * 2
    assert to_bgr8(np.full((1, 1), 257 * 100, np.uint16))[0, 0].tolist() == [100, 100, 100]
    transparent = np.zeros((1, 2, 4), np.uint8)
    transparent[0, 1] = [0, 0, 0, 255]
    assert to_bgr8(transparent)[0].tolist() == [[255, 255, 255], [0, 0, 0]]     # over white
    assert to_bgr8(np.array([[0.5]], np.float32))[0, 0].tolist() == [128] * 3
    with pytest.raises(InputError, match='image not found: .*gone.png'):
        read_image(str(tmp_path / 'gone.png'))


def test_tiny_and_huge_frames_with_automatic_boxes(weights):
    est = Pose3DEstimator(weights[0], coco_weights=weights[1], device='cpu', flip_test=False)
    for frame in [noise(3, 4), np.tile(noise(100, 100), (40, 30, 1))]:         # 3x4 and 4000x3000
        people = est(frame)
        assert isinstance(people, list)
        for person in people:
            assert np.all(np.isfinite(person['keypoints_3d'])) and person['keypoints_3d'].shape == (17, 3)
    est.keypoint_threshold = np.inf                 # no keypoint is sure enough: nobody
    assert est(noise(50, 60)) == []


def test_max_people_keeps_the_best_detections(weights):
    est = Pose3DEstimator(weights[0], coco_weights=weights[1], device='cpu', flip_test=False, max_people=2)
    est.person_detector = lambda frame: [(np.array([0, 0, 30, 60.]), 0.9), (np.array([30, 0, 60, 60.]), 0.8),
                                         (np.array([60, 0, 90, 60.]), 0.7)]
    people = est(noise(60, 90))
    assert [p['score'] for p in people] == [0.9, 0.8]


def test_user_keypoints_coco_json_and_h36m_npz(weights, tmp_path):
    coco = np.random.RandomState(0).rand(17, 2) * 100 + 50
    people = [{'keypoints_2d_coco': coco.tolist()}]
    (tmp_path / 'k.json').write_text(json.dumps({'frames': [{'frame': 0, 'people': people}]}))
    h36m = np.random.RandomState(1).rand(2, 17, 3) * 100 + 50
    np.savez(tmp_path / 'k.npz', keypoints=h36m, layout='h36m')
    cv2.imwrite(str(tmp_path / 'in.png'), noise(240, 320))
    run_demo(weights, '--input', tmp_path / 'in.png', '--keypoints', tmp_path / 'k.json', '--output', tmp_path / 'a')
    person = json.loads((tmp_path / 'a' / 'results.json').read_text())['frames'][0]['people'][0]
    np.testing.assert_allclose(person['keypoints_2d_coco'], coco, atol=0.006)
    np.testing.assert_allclose(person['keypoints_2d'][0], (coco[11] + coco[12]) / 2, atol=0.006)   # mid-hip
    people = load_keypoints_file(str(tmp_path / 'k.npz'))
    assert list(people) == [0, 1] and np.array_equal(people[1][0]['keypoints_2d'], h36m[1, :, :2])
    assert np.array_equal(people[1][0]['scores_2d'], h36m[1, :, 2])
    est = Pose3DEstimator(weights[0], coco_weights=weights[1], device='cpu')
    out = list(est.run([noise(240, 320)] * 2, keypoints=people))
    assert out[1][0]['keypoints_2d_coco'] is None and np.array_equal(out[1][0]['keypoints_2d'], h36m[1, :, :2])
    np.savez(tmp_path / 'bad.npz', keypoints=h36m)
    with pytest.raises(InputError, match="bad.npz, frame 0: say whether keypoints are COCO- or Human3.6M"):
        load_keypoints_file(str(tmp_path / 'bad.npz'))


def test_keypoints_for_every_frame_need_no_coco_file(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, 'DEFAULT_COCO', str(tmp_path / 'absent_coco.pth'))
    cv2.imwrite(str(tmp_path / 'in.png'), noise(120, 160))
    points = (np.random.RandomState(2).rand(17, 2) * 80 + 20).tolist()
    (tmp_path / 'k.json').write_text(json.dumps({'layout': 'h36m', 'frames': [[points]]}))
    demo.cli(['--checkpoint', weights[0], '--device', 'cpu', '--input', str(tmp_path / 'in.png'),
              '--keypoints', str(tmp_path / 'k.json'), '--output', str(tmp_path / 'out')])
    person = json.loads((tmp_path / 'out' / 'results.json').read_text())['frames'][0]['people'][0]
    np.testing.assert_allclose(person['keypoints_2d'], points, atol=0.006)
    (tmp_path / 'k.json').write_text(json.dumps({'layout': 'h36m', 'frames': [{'frame': 5, 'people': [points]}]}))
    with pytest.raises(SystemExit):
        demo.cli(['--checkpoint', weights[0], '--device', 'cpu', '--input', str(tmp_path / 'in.png'),
                  '--keypoints', str(tmp_path / 'k.json'), '--output', str(tmp_path / 'out2')])
    assert 'no COCO weights were loaded' in capsys.readouterr().err.strip().splitlines()[-1]
