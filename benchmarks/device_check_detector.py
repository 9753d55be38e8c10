"""GPU check of the detector (run on a CUDA machine; parts without CUDA/torchvision skip).

1. torchvision name compatibility: torchvision's ResNet50/101/152 (minus ``fc``) and VGG16
   ``features`` state_dicts load strictly into our backbones.
2. ``dsfd.nms.nms`` against ``torchvision.ops.nms`` on random boxes (CPU and CUDA).
3. CPU vs CUDA: the same small model gives the same single-scale and multi-scale detections.
4. Full-width ``release-r152`` on CUDA: forward time at 640x640 (median of 5 after warm-up),
   ``Detector.detect_multiscale`` on a 1024x683 image (11 passes), peak memory.

    PYTHONPATH=. python3 benchmarks/device_check_detector.py [CHECK_NAME ...]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

import dsfd
from dsfd.multiscale import multiscale_passes, size_filter
from dsfd.nms import box_vote, nms
from dsfd.preprocess import image_to_tensor

CUDA = torch.cuda.is_available()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def check_torchvision_names() -> None:
    try:
        import torchvision
    except ImportError:
        print("torchvision: not installed, skipped")
        return
    for name in ("resnet50", "resnet101", "resnet152"):
        tv = getattr(torchvision.models, name)(weights=None).state_dict()
        state = {k: v for k, v in tv.items() if not k.startswith("fc.")}
        ours = dsfd.build_model(name).backbone
        ours.load_state_dict(state, strict=True)
        print(f"torchvision {name}: {len(state)} tensors load strictly into our backbone")
    tv = torchvision.models.vgg16(weights=None).state_dict()
    feats = {k: v for k, v in tv.items() if k.startswith("features.")}
    own = {k: v for k, v in dsfd.build_model("vgg16").backbone.state_dict().items()
           if k.startswith("features.")}
    same = {k: tuple(v.shape) for k, v in feats.items()} == {
        k: tuple(v.shape) for k, v in own.items()}
    print(f"torchvision vgg16 features: {len(feats)} tensors, names and shapes equal: {same}")


def check_nms_vs_torchvision() -> None:
    try:
        from torchvision.ops import nms as tv_nms
    except ImportError:
        print("torchvision.ops.nms: not installed, skipped")
        return
    devices = ["cpu", "cuda"] if CUDA else ["cpu"]
    for device in devices:
        agree = 0
        for seed in range(20):
            g = torch.Generator().manual_seed(seed)
            xy = torch.rand(4000, 2, generator=g) * 600
            boxes = torch.cat((xy, xy + 8 + torch.rand(4000, 2, generator=g) * 80), 1)
            scores = torch.rand(4000, generator=g)  # distinct scores: no tie-order question
            boxes, scores = boxes.to(device), scores.to(device)
            agree += int(torch.equal(nms(boxes, scores, 0.3).cpu(),
                                     tv_nms(boxes, scores, 0.3).cpu()))
        start = time.perf_counter()
        for _ in range(10):
            nms(boxes, scores, 0.3)
        _sync()
        ours = (time.perf_counter() - start) / 10
        start = time.perf_counter()
        for _ in range(10):
            tv_nms(boxes, scores, 0.3)
        _sync()
        theirs = (time.perf_counter() - start) / 10
        print(f"nms vs torchvision on {device}: {agree}/20 identical keep lists (4000 boxes); "
              f"time ours {ours * 1e3:.1f} ms, torchvision {theirs * 1e3:.1f} ms, "
              f"ratio {ours / theirs:.1f}")


def check_cpu_vs_cuda() -> None:
    if not CUDA:
        print("cpu vs cuda: no CUDA, skipped")
        return
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for name in ("vgg16", "release-r152"):
        torch.manual_seed(0)
        model = dsfd.build_model(name, width=0.25)
        cpu = dsfd.Detector(model, device="cpu")
        a = cpu.detect([img])[0]
        am = cpu.detect_multiscale(img)
        gpu = dsfd.Detector(model, device="cuda")
        b = gpu.detect([img])[0]
        bm = gpu.detect_multiscale(img)
        n = min(len(a), len(b), 50)
        nm = min(len(am), len(bm), 50)
        diff = np.abs(a[:n] - b[:n]).max(initial=0.0)
        diff_m = np.abs(am[:nm] - bm[:nm]).max(initial=0.0)
        print(f"cpu vs cuda {name} w0.25: single {len(a)} vs {len(b)} boxes, max diff of top "
              f"{n}: {diff:.2e}; multiscale {len(am)} vs {len(bm)}, max diff of top {nm}: "
              f"{diff_m:.2e}")


def check_release_full_width() -> None:
    if not CUDA:
        print("release-r152 on cuda: no CUDA, skipped")
        return
    torch.manual_seed(0)
    model = dsfd.build_model("release-r152").cuda().eval()
    x = torch.randn(1, 3, 640, 640, device="cuda")
    times = []
    with torch.inference_mode():
        out = model(x)
        for _ in range(5):
            _sync()
            start = time.perf_counter()
            model(x)
            _sync()
            times.append(time.perf_counter() - start)
    print(f"release-r152 640x640 cuda fp32: loc {tuple(out.second.loc.shape)}, finite "
          f"{bool(torch.isfinite(out.second.loc).all())}, forward "
          f"{statistics.median(times) * 1e3:.1f} ms (median of 5)")
    det = dsfd.Detector(model, device="cuda")
    img = np.random.default_rng(1).integers(0, 256, (683, 1024, 3), dtype=np.uint8)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    single = det.detect([img])[0]
    _sync()
    t_single = time.perf_counter() - start
    start = time.perf_counter()
    multi = det.detect_multiscale(img)
    _sync()
    t_multi = time.perf_counter() - start
    pixels = image_to_tensor(img)
    dets, parts = [], []
    for p in multiscale_passes(683, 1024):
        t0 = time.perf_counter()
        dets.append(size_filter(det.detect_pass(pixels, p.scale, p.flip), p.keep))
        _sync()
        parts.append(f"{p.scale:g}{'f' if p.flip else ''}:{len(dets[-1])}/"
                     f"{time.perf_counter() - t0:.2f}s")
    t0 = time.perf_counter()
    voted = box_vote(torch.cat(dets))
    _sync()
    print(f"passes (scale:boxes/time) {' '.join(parts)}; box_vote of "
          f"{sum(len(d) for d in dets)} boxes -> {len(voted)} in {time.perf_counter() - t0:.2f} s")
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"release-r152 on 1024x683: detect {len(single)} boxes in {t_single:.2f} s; "
          f"detect_multiscale (11 passes) {len(multi)} boxes in {t_multi:.2f} s; "
          f"peak GPU memory {peak:.1f} GiB")


def main() -> None:
    print(f"torch {torch.__version__}, cuda {CUDA}"
          + (f" ({torch.cuda.get_device_name()})" if CUDA else ""))
    only = set(sys.argv[1:])
    for check in (check_torchvision_names, check_nms_vs_torchvision, check_cpu_vs_cuda,
                  check_release_full_width):
        if only and check.__name__ not in only:
            continue
        start = time.perf_counter()
        try:
            check()
        except Exception as exc:  # report every check even if one fails
            print(f"{check.__name__}: FAILED {type(exc).__name__}: {exc}")
        print(f"  ({check.__name__} {time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
