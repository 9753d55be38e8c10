"""Greedy NMS and the official box voting, vectorised in torch (no torchvision).

Both are the same greedy clustering over score-sorted boxes: a box becomes a *leader* unless an
earlier leader overlaps it; every other box belongs to the first earlier leader that overlaps
it (that is the group the reference loop removes it with). :func:`greedy_clusters` computes
leaders and groups block by block: overlaps with earlier leaders are one IoU matrix product per
block, and the sequential part inside a block is a loop over candidate rows of a precomputed
boolean overlap matrix (cheap vector ops). Memory stays ``O(block * (block + leaders))``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from dsfd.boxes import box_iou, box_iou_plus_one

IouFn = Callable[[Tensor, Tensor], Tensor]


def _overlaps(iou: Tensor, thresh: float, inclusive: bool) -> Tensor:
    return iou >= thresh if inclusive else iou > thresh


def _resolve_block(over: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy resolution inside one block.

    Args:
        over: ``[B, B]`` bool, ``over[j, i]`` = box j suppresses box i (only ``j < i`` used).
        candidate: ``[B]`` bool, boxes not already claimed by an earlier block's leader.

    Returns:
        ``(leader [B] bool, owner [B] int)``: owner = index in the block of the claiming
        leader (itself for leaders), -1 for non-candidates.
    """
    size = over.shape[0]
    over = np.triu(over, k=1)
    removed = ~candidate
    leader = np.zeros(size, dtype=bool)
    owner = np.full(size, -1, dtype=np.int64)
    for i in np.flatnonzero(candidate):
        if removed[i]:
            continue
        leader[i] = True
        owner[i] = i
        claim = over[i] & ~removed
        owner[claim] = i
        removed |= claim
    return leader, owner


def greedy_clusters(
    boxes: Tensor,
    iou_thresh: float,
    *,
    iou_fn: IouFn = box_iou,
    inclusive: bool = False,
    block_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Greedy clustering of boxes already sorted by descending score.

    Args:
        boxes: ``[N, 4]`` xyxy, sorted by score (best first).
        iou_thresh: overlap threshold.
        iou_fn: pairwise IoU function (``box_iou`` or ``box_iou_plus_one``).
        inclusive: overlap means ``IoU >= thresh`` (box voting) instead of ``> thresh`` (NMS).
        block_size: boxes resolved per block.

    Returns:
        ``(leaders, group)``: ``leaders`` ``[L]`` int64 indices in ascending order;
        ``group`` ``[N]`` int64, the position in ``leaders`` of each box's group.
    """
    n = boxes.shape[0]
    device = boxes.device
    group = torch.empty(n, dtype=torch.int64, device=device)
    leader_idx: list[Tensor] = []
    num_leaders = 0
    for start in range(0, n, block_size):
        blk = boxes[start:start + block_size]  # [B, 4]
        claimed = torch.zeros(blk.shape[0], dtype=torch.bool, device=device)
        if num_leaders:
            prev = boxes[torch.cat(leader_idx)]  # [L, 4]
            over = _overlaps(iou_fn(prev, blk), iou_thresh, inclusive)  # [L, B]
            claimed = over.any(dim=0)
            first = over.to(torch.uint8).argmax(dim=0)  # first overlapping leader
            group[start:start + blk.shape[0]][claimed] = first[claimed]
        within = _overlaps(iou_fn(blk, blk), iou_thresh, inclusive).cpu().numpy()
        leader, owner = _resolve_block(within, (~claimed).cpu().numpy())
        local = np.flatnonzero(leader)
        rank = np.full(blk.shape[0], -1, dtype=np.int64)
        rank[local] = np.arange(num_leaders, num_leaders + local.size)
        mine = owner >= 0
        ids = torch.from_numpy(np.flatnonzero(mine)).to(device)
        group[start + ids] = torch.from_numpy(rank[owner[mine]]).to(device)
        leader_idx.append(torch.from_numpy(local + start).to(device))
        num_leaders += local.size
    leaders = torch.cat(leader_idx) if leader_idx else torch.empty(0, dtype=torch.int64,
                                                                   device=device)
    return leaders, group


def sort_by_score(scores: Tensor) -> Tensor:
    """Indices ordering ``scores`` descending; ties keep input order (stable)."""
    return torch.sort(scores, descending=True, stable=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_thresh: float = 0.3, *,
        block_size: int = 1024) -> Tensor:
    """Greedy non-maximum suppression: a box is dropped when ``IoU > iou_thresh`` (no ``+1``)
    with a higher-scored kept box.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        iou_thresh: suppression threshold.
        block_size: see :func:`greedy_clusters` (memory/speed only, same result).

    Returns:
        ``[K]`` int64 indices of kept boxes, by descending score.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = sort_by_score(scores)
    leaders, _ = greedy_clusters(boxes[order], iou_thresh, iou_fn=box_iou, inclusive=False,
                                 block_size=block_size)
    return order[leaders]


def box_vote(dets: Tensor, iou_thresh: float = 0.3, top_k: int | None = 750, *,
             block_size: int = 1024) -> Tensor:
    """Box voting of the official WIDER FACE test script (``bbox_vote``).

    Boxes sorted by score; each leader takes all remaining boxes with ``IoU >= iou_thresh``
    (``+1`` convention); groups of one box are dropped; a group gives the score-weighted mean
    of its coordinates and its maximum score. Output in leader order, first ``top_k`` kept.

    Args:
        dets: ``[N, 5]`` ``(x1, y1, x2, y2, score)``.
        iou_thresh: grouping threshold.
        top_k: boxes kept (None keeps all).
        block_size: see :func:`greedy_clusters` (memory/speed only, same result).

    Returns:
        ``[K, 5]`` float32 in the same layout, computed in float64.
    """
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"box_vote expects [N, 5] detections, got {tuple(dets.shape)}")
    d = dets.double()[sort_by_score(dets[:, 4])]
    if d.shape[0] == 0:
        return dets.new_zeros((0, 5), dtype=torch.float32)
    leaders, group = greedy_clusters(d[:, :4], iou_thresh, iou_fn=box_iou_plus_one,
                                     inclusive=True, block_size=block_size)
    num = leaders.shape[0]
    count = torch.zeros(num, dtype=torch.int64, device=d.device).index_add_(
        0, group, torch.ones_like(group))
    weighted = torch.zeros(num, 4, dtype=d.dtype, device=d.device).index_add_(
        0, group, d[:, :4] * d[:, 4:5])  # [L, 4] sum of s * box
    total = torch.zeros(num, dtype=d.dtype, device=d.device).index_add_(0, group, d[:, 4])
    best = torch.full((num,), -torch.inf, dtype=d.dtype, device=d.device).scatter_reduce_(
        0, group, d[:, 4], reduce="amax")
    out = torch.cat((weighted / total[:, None], best[:, None]), dim=1)[count > 1]
    return (out if top_k is None else out[:top_k]).float()
