"""One prediction path: evaluate's probabilities are analyze's for the same crops (real
clip, real MTCNN, the shipped checkpoint)."""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from fer_video.classify import EmotionClassifier
from fer_video.decode import sample_frames
from fer_video.detect import FaceDetector
from fer_video.evaluate import evaluate_model, write_outputs


def test_evaluate_gives_the_probabilities_analyze_gives_for_the_same_crops(samples, tmp_path):
    clf = EmotionClassifier(device="cpu", batch_size=4)
    frames = [f.image for _, f in zip(range(6), sample_frames(str(samples / "pyfeat_single_face.mp4"), fps=2))]
    crops = []
    for image, dets in zip(frames, FaceDetector().detect(frames)):
        crops += [clf.crop(image, d.box, d.landmarks) for d in dets]
    assert len(crops) >= 5
    from_analyze = clf.predict_crops(crops)
    # The same crops as a class-folder set (PNG: lossless), scored by evaluate.
    data = tmp_path / "crops"
    (data / "happy").mkdir(parents=True)
    for i, c in enumerate(crops):
        Image.fromarray(c).save(data / "happy" / f"{i:03d}.png")
    result = evaluate_model(None, str(data), split="test", device="cpu")
    write_outputs(result, tmp_path / "eval")
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert [r["label"] for r in rows] == ["happy"] * len(crops)
    from_evaluate = np.array([[float(r[c]) for c in clf.classes] for r in rows])
    np.testing.assert_allclose(from_evaluate, from_analyze, atol=1e-6)    # 6 decimals, as written
    # unrounded: equal up to float32 noise from the batch size (4 here, 256 in evaluate)
    np.testing.assert_allclose(result["probabilities"]["probs"], from_analyze, atol=1e-7)
