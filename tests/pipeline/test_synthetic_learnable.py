"""The synthetic benchmark is learnable: a tiny CNN trained for 800 steps on train crops tells
faces from background windows and from windows shifted off a face, on val (chance is 0.5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.synthetic import render_wider_image

PATCH = 24


def _window(image: Image.Image, cx: float, cy: float, side: float) -> np.ndarray:
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    crop = image.crop(box).resize((PATCH, PATCH), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, P, P)


def _hits_face(
    box: tuple[float, float, float, float], faces: list[tuple[int, int, int, int]]
) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < x + w and x < x1 and y0 < y + h and y < y1 for x, y, w, h in faces)


def _crops(split: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Face windows (label 1); background and off-face windows (label 0), balanced."""
    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for index in range(count):
        _, scene = render_wider_image(seed, split, index)
        image = Image.fromarray(scene.image)
        width, height = image.size
        faces = [f.box_xywh for f in scene.faces]
        for face in scene.faces:
            x, y, w, h = face.box_xywh
            if face.invalid or face.occlusion or face.blur == 2 or h < 12:
                continue
            side = 1.2 * max(w, h)
            pos.append(_window(image, x + w / 2, y + h / 2, side))
            dx, dy = rng.choice([-1.0, 1.0], size=2) * rng.uniform(0.8, 1.0, size=2) * side
            neg.append(_window(image, x + w / 2 + dx, y + h / 2 + dy, side))  # off the face
        for _ in range(len(pos) - len(neg) + 5):
            side = float(rng.uniform(14, 90))
            cx, cy = (
                rng.uniform(side / 2, width - side / 2),
                rng.uniform(side / 2, height - side / 2),
            )
            if not _hits_face((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), faces):
                neg.append(_window(image, cx, cy, side))
    n = min(len(pos), len(neg))
    crops = np.stack(pos[:n] + neg[:n])  # (2n, 3, P, P)
    labels = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
    return crops, labels


@pytest.mark.slow
def test_tiny_cnn_learns_faces() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x_train, y_train = _crops("train", 40, seed=1)
    x_val, y_val = _crops("val", 8, seed=1)
    assert len(y_train) > 300 and len(y_val) > 100
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=800)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)
    for _ in range(800):
        batch = torch.randint(0, len(yt), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_val)).argmax(1).numpy()
    accuracy = float((predicted == y_val).mean())
    print(f"val accuracy {accuracy:.3f}")
    assert accuracy > 0.9, accuracy
