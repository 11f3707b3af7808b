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


def _real_crops(samples, clf, n=6):
    frames = [f.image for _, f in zip(range(n), sample_frames(str(samples / "pyfeat_single_face.mp4"), fps=2))]
    crops = []
    for image, dets in zip(frames, FaceDetector().detect(frames)):
        crops += [clf.crop(image, d.box, d.landmarks) for d in dets]
    return crops


def test_precision_resolves_and_rejects_what_it_cannot_run():
    import pytest
    import torch

    from fer_video.predict import resolve_precision

    # bf16 in hardware, read from Linux's CPU flags (not from torch, whose answer it checks):
    # auto takes bf16 only there; where oneDNN only emulates it (AVX-512 without AVX512_BF16,
    # about twice as slow as fp32), auto is fp32 and an explicit bf16 still runs.
    from conftest import cpu_flags_show_bf16

    native = bool(cpu_flags_show_bf16())
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert resolve_precision("bf16", "cpu") == "bf16"
    else:
        with pytest.raises(ValueError, match="bf16"):
            resolve_precision("bf16", "cpu")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp32"      # CUDA's bf16 path is unmeasured
    with pytest.raises(ValueError, match="bf16"):
        resolve_precision("bf16", "cuda")
    with pytest.raises(ValueError, match="invalid precision"):
        resolve_precision("fp16", "cpu")


def test_bf16_runs_in_bf16_and_stays_within_its_documented_bound_of_fp32(samples):
    import pytest
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU's oneDNN has no bfloat16 kernels")
    fp32 = EmotionClassifier(device="cpu", precision="fp32")
    bf16 = EmotionClassifier(device="cpu", precision="bf16")
    assert (fp32.info()["precision"], bf16.info()["precision"]) == ("fp32", "bf16")
    crops = _real_crops(samples, fp32)
    assert len(crops) >= 5
    p32, p16 = fp32.predict_crops(crops), bf16.predict_crops(crops)
    diff = np.abs(p32 - p16).max()
    assert 0 < diff < 0.02            # really bf16 (not fp32 again), and close (docs: ~0.01;
    #                                   0.0112 the largest seen, on the crowd clip)
    assert (p32.argmax(1) == p16.argmax(1)).all()
    np.testing.assert_allclose(p16.sum(1), 1.0, atol=1e-12)


def test_batchnorm_folding_is_the_same_function_and_the_bf16_form_is_kept_until_weights_change(samples):
    import torch
    from torch import nn

    from fer_video.predict import fold_batchnorm, inference_form
    from fer_video.preprocess import to_tensor

    from fer_video.checkpoint import load_checkpoint

    clf = EmotionClassifier(device="cpu", precision="fp32")
    model, _ = load_checkpoint(clf.weights_path)
    crops = np.stack(_real_crops(samples, clf, n=4))
    x = to_tensor(crops, clf.config).contiguous(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # untouched
    n_bn = lambda m: sum(isinstance(k, nn.BatchNorm2d) for k in m.modules())   # noqa: E731
    assert n_bn(model) == 54 and n_bn(folded) == 1            # the seed head's BN follows a pool
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=2e-4)
    fp32 = inference_form(model, "fp32")                     # what fp32 runs: folded, fp32
    assert fp32 is inference_form(model, "fp32") and n_bn(fp32) == 1
    assert next(fp32.parameters()).dtype == torch.float32
    assert n_bn(clf.model) == 1 and clf.model._fer_video_form == "fp32"   # all the classifier keeps
    with torch.no_grad():
        np.testing.assert_allclose(fp32(x).numpy(), model(x).numpy(), atol=2e-4)
    form = inference_form(model, "bf16")
    assert form is inference_form(model, "bf16")               # made once
    assert next(form.parameters()).dtype == torch.bfloat16 and n_bn(form) == 1
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)                           # a training step, in effect
    rebuilt = inference_form(model, "bf16")
    assert rebuilt is not form
    np.testing.assert_allclose(rebuilt.head.fc.bias.detach().float().numpy(),
                               model.head.fc.bias.detach().numpy(), atol=0.02)
