"""Greedy NMS and the official box voting, vectorised in torch (no torchvision).

Both are the same greedy clustering over score-sorted boxes: a box becomes a *leader* unless an
earlier leader overlaps it; every other box belongs to the first earlier leader that overlaps
it (that is the group the reference loop removes it with). :func:`greedy_clusters` finds
leaders and groups in two steps, both on the boxes' device:

1. **Which pairs overlap.** ``"sparse"``: only pairs that can reach the threshold are tested.
   Two boxes with ``IoU >= t`` (or ``> t``) have longer sides within a factor ``1/t`` of each
   other, and their ``x1`` differ by at most ``(1 - t) * max(w)`` (``y1`` likewise), because
   ``IoU <= inter_w / w`` for each box. So boxes are bucketed by ``floor(log2(longer side))``
   and, per bucket, placed on an ``(x1, y1)`` grid whose cells are ``(1 - t)`` times the
   bucket's largest side (plus a rounding margin); only boxes in neighbouring cells of
   compatible buckets are compared, with exactly the IoU formula of
   :func:`dsfd.boxes.box_iou` / :func:`dsfd.boxes.box_iou_plus_one`. ``"dense"``: IoU matrices
   per block of ``block_size`` boxes against all earlier leaders and within the block (the
   right choice when most pairs overlap anyway; memory ``O(block * (block + leaders))``).
   ``"auto"`` (default) resolves the first block densely and takes the dense path when its
   share of leaders predicts at most ``4 * block_size`` leaders overall (the dense cost grows
   with the leaders; with few of them it beats the sparse path), the sparse path otherwise;
   the sparse path falls back to dense above ``max_pairs`` candidate pairs or where the
   inputs do not allow it (a custom ``iou_fn``, a threshold ``<= 0``, non-finite
   coordinates).
2. **The greedy pass.** ``keep[i] = not any(overlap[j, i] and keep[j] for j < i)`` is a
   fixed point that the iteration ``keep <- F(keep)`` from all-true reaches exactly (after
   each step the prefix that did not change is final), in as many steps as the longest chain
   of "suppressed by a box that is itself suppressed" (a handful in practice). Each step is a
   vector operation; after :data:`MAX_FIXED_POINT_STEPS` steps the rest is finished by the
   plain sequential loop on the CPU, so the worst case stays bounded.

**Default on the CPU** (``"auto"``): ``"window"``, the greedy loop compiled
(:mod:`dsfd.nms_compiled`), each leader testing only the boxes inside its ``x1`` window; for
non-finite boxes or a threshold ``<= 0``: ``"loop"``, the release's greedy loop in numpy (one
IoU row per leader against the remaining boxes only), while its estimated cost stays under a
share of the ``"sweep"``'s (candidate pairs from a sort along ``x`` or ``y``, see
:func:`_sweep_plan`, then step 2), the sweep finishing the boxes the loop left. On other
devices ``"auto"`` stays in tensor code (dense or sparse, above). Costs from
``benchmarks/bench_postprocess.py``.

All paths give exactly the leaders and groups of the one-box-at-a-time reference loops
(``tests/dsfd/test_nms.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from dsfd.boxes import box_area, box_iou, box_iou_plus_one

IouFn = Callable[[Tensor, Tensor], Tensor]

SPARSE_MAX_PAIRS = 1 << 25  # candidate pairs above which "auto" takes the dense path
PAIR_CHUNK = 1 << 20  # candidate pairs materialised at once by the sparse path
MAX_FIXED_POINT_STEPS = 48  # vector steps of the greedy pass before the sequential finish
# cost model of "auto" (microseconds, 1 CPU thread, measured with bench_postprocess.py): the
# loop pays per leader and per remaining box, the sweep per candidate pair
LOOP_US_PER_LEADER = 20.0
LOOP_US_PER_BOX = 0.01
SWEEP_US = 1000.0
SWEEP_US_PER_PAIR = 0.035
LOOP_BUDGET_SHARE = 0.25  # the loop may spend this share of the sweep's estimate, no more
_GRID_LIMIT = 1 << 30  # grid cell indices must fit the combined 62-bit key
METHODS = ("auto", "window", "loop", "sweep", "sparse", "dense")


def _overlaps(iou: Tensor, thresh: float, inclusive: bool) -> Tensor:
    return iou >= thresh if inclusive else iou > thresh


def pair_iou(a: Tensor, b: Tensor, *, plus_one: bool = False) -> Tensor:
    """IoU of matched pairs ``a[k]``, ``b[k]``: the same floating-point operations, hence the
    same bits, as the matrix functions :func:`dsfd.boxes.box_iou` (``plus_one=False``) and
    :func:`dsfd.boxes.box_iou_plus_one` (``plus_one=True``).

    Args:
        a: ``[K, 4]`` xyxy.
        b: ``[K, 4]`` xyxy.
        plus_one: legacy ``+1`` pixel convention.

    Returns:
        ``[K]`` IoU.
    """
    lt = torch.maximum(a[:, :2], b[:, :2])  # [K, 2]
    rb = torch.minimum(a[:, 2:], b[:, 2:])  # [K, 2]
    if plus_one:
        area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
        area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        wh = (rb - lt + 1).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        return inter / (area_a + area_b - inter)
    area_a, area_b = box_area(a), box_area(b)
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


def _expand(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """All ``(q, p)`` with ``lo[q] <= p < hi[q]``: ``([P] query index, [P] position)``."""
    counts = hi - lo
    query = torch.repeat_interleave(torch.arange(lo.shape[0], device=lo.device), counts)
    start = torch.cumsum(counts, 0) - counts  # [Q] first pair of each query
    return query, lo[query] + torch.arange(query.shape[0], device=lo.device) - start[query]


def _bucket_queries(boxes: Tensor, offset: float,
                    thresh: float) -> list[tuple[Tensor, Tensor, Tensor, Tensor, float]]:
    """Per size bucket ``c``: ``(targets sorted by cell, queries, [9, Q] lo, [9, Q] hi, cell)``.

    Targets are the boxes of bucket ``c``; queries those of buckets ``c - reach .. c``;
    ``target[lo[k, q]:hi[k, q]]`` are the candidates of query ``q`` in its ``k``-th
    neighbouring cell. A query box ``a`` and a target box ``b`` (longer side < ``2^(c+1)``)
    with ``IoU >= thresh`` have ``|x1_a - x1_b| <= (1 - thresh) * 2^(c+1) <= cell`` (``y1``
    likewise), so their cells are at most one apart on each axis. A pair of two boxes of
    bucket ``c`` is listed once: from the earlier one in cell order, looking at its own cell
    (later positions only) and the four cells after it.
    """
    x1, y1, x2, y2 = boxes.double().unbind(1)
    w, h = x2 - x1 + offset, y2 - y1 + offset
    valid = (w > 0) & (h > 0)  # a box without area overlaps nothing (IoU 0 or NaN)
    bucket = torch.floor(torch.log2(torch.maximum(w, h).clamp(min=1e-30))).long()
    # sides within 1/thresh: buckets at most floor(1 + log2(1/thresh)) apart (margin: rounding)
    reach = int(math.floor(1.0 + math.log2(1.0 / thresh) + 1e-4))
    # the bounds hold for exact IoUs; computed ones may be off by float rounding of coordinates
    slack = 1e-5 * float(boxes.abs().max())
    position = torch.empty(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    out: list[tuple[Tensor, Tensor, Tensor, Tensor, float]] = []
    for c in torch.unique(bucket[valid]).tolist():
        cell = (1.0 - thresh + 1e-4) * 2.0 ** (c + 1) + slack
        gx, gy = torch.floor(x1 / cell).long(), torch.floor(y1 / cell).long()
        target = torch.nonzero(valid & (bucket == c)).squeeze(1)
        query = torch.nonzero(valid & (bucket <= c) & (bucket >= c - reach)).squeeze(1)
        tx, ty = gx[target], gy[target]
        bx, by = int(tx.min()) - 2, int(ty.min()) - 2
        if int(tx.max()) - bx >= _GRID_LIMIT or int(ty.max()) - by >= _GRID_LIMIT:
            raise OverflowError("boxes span too many grid cells for the sparse path")
        keys, order = torch.sort((tx - bx) * _GRID_LIMIT + (ty - by), stable=True)
        target = target[order]
        position[target] = torch.arange(target.shape[0], device=boxes.device)
        same = bucket[query] == c  # [Q] query is itself a target
        # far queries are clamped just outside the targets' cells: they still match nothing
        qx = (gx[query] - bx).clamp(0, int(tx.max()) - bx + 4)
        qy = (gy[query] - by).clamp(0, int(ty.max()) - by + 4)
        lo, hi = [], []
        for dx, dy in itertools.product((-1, 0, 1), (-1, 0, 1)):
            k = (qx + dx) * _GRID_LIMIT + (qy + dy)  # [Q]
            lo.append(torch.searchsorted(keys, k, side="left"))
            hi.append(torch.searchsorted(keys, k, side="right"))
            if (dx, dy) == (0, 0):  # own cell: only later positions
                lo[-1] = torch.where(same, position[query] + 1, lo[-1])
            elif (dx, dy) < (0, 0):  # cells before: the pair is listed from the other box
                hi[-1] = torch.where(same, lo[-1], hi[-1])
        out.append((target, query, torch.stack(lo), torch.stack(hi), cell))
    return out


def _sparse_edges(boxes: Tensor, thresh: float, inclusive: bool, plus_one: bool,
                  max_pairs: int) -> tuple[Tensor, Tensor] | None:
    """Overlapping pairs ``(src [E], dst [E])`` with ``src < dst``; None above ``max_pairs``."""
    buckets = _bucket_queries(boxes, 1.0 if plus_one else 0.0, thresh)
    if sum(int((hi - lo).sum()) for _, _, lo, hi, _ in buckets) > max_pairs:
        return None
    corner = boxes[:, :2].double().T.contiguous()  # [2, N] x1, y1 for the cheap pre-test
    src: list[Tensor] = []
    dst: list[Tensor] = []
    for target, query, lo, hi, cell in buckets:
        queries = query.repeat(9)  # [9Q], matching lo.reshape(-1)
        lo, hi = lo.reshape(-1), hi.reshape(-1)
        ends = torch.cumsum(hi - lo, 0).cpu().numpy()
        cuts = np.searchsorted(ends, np.arange(PAIR_CHUNK, int(ends[-1]), PAIR_CHUNK))
        for s, e in zip([0, *cuts.tolist()], [*cuts.tolist(), len(ends)], strict=True):
            q, p = _expand(lo[s:e], hi[s:e])
            a, b = queries[s:e][q], target[p]
            near = ((corner[0, a] - corner[0, b]).abs() <= cell) & (
                (corner[1, a] - corner[1, b]).abs() <= cell)  # necessary for IoU >= thresh
            a, b = a[near], b[near]
            i, j = torch.minimum(a, b), torch.maximum(a, b)
            over = _overlaps(pair_iou(boxes[i], boxes[j], plus_one=plus_one), thresh,
                             inclusive)
            src.append(i[over])
            dst.append(j[over])
    empty = torch.empty(0, dtype=torch.int64, device=boxes.device)
    return (torch.cat(src), torch.cat(dst)) if src else (empty, empty)


class _SweepPlan(NamedTuple):
    num_pairs: int  # candidate pairs to test
    axis: int  # 0: sweep along x, 1: along y
    order: Tensor  # [V] boxes with an area, sorted by their start on ``axis``
    lo: Tensor  # [V] first candidate (position in ``order``) of each box
    hi: Tensor  # [V] end of its candidates
    reach: Tensor  # [N, 2] window per box and axis


def _sweep_plan(boxes: Tensor, thresh: float, plus_one: bool,
                segment: Tensor | None = None) -> _SweepPlan:
    """Candidate pairs of the sweep: with ``x1_a <= x1_b``, ``IoU(a, b) <= inter_w / w_a <=
    (x2_a - x1_b) / w_a`` (``+1`` on both sides for ``plus_one``), so an overlap needs
    ``x1_b <= x1_a + (1 - t) * w_a`` (``y`` likewise). After a stable sort by ``x1`` each box
    is a candidate only of the boxes before it within that window; of the two axes, the one
    with fewer candidate pairs is used. Boxes without area overlap nothing."""
    offset = 1.0 if plus_one else 0.0
    coords = boxes.double()
    sides = coords[:, 2:] - coords[:, :2] + offset  # [N, 2] w, h
    valid = torch.nonzero((sides > 0).all(dim=1)).squeeze(1)  # [V]
    # the bound holds for exact IoUs; computed ones may be off by float rounding
    slack = 1e-5 * float(coords.abs().max()) if boxes.shape[0] else 0.0
    reach = (1.0 - thresh + 1e-4) * sides + slack  # [N, 2]
    best: _SweepPlan | None = None
    for axis in (0, 1):
        key = coords[:, axis]
        if segment is not None and boxes.shape[0]:  # segments apart by more than any window
            gap = float(key.max() - key.min()) + 2.0 * float(reach[:, axis].max()) + 1.0
            key = key + segment.double() * gap
        start, order = torch.sort(key[valid], stable=True)  # [V]
        order = valid[order]
        lo = torch.arange(1, order.shape[0] + 1, device=boxes.device)  # [V] after itself
        hi = torch.maximum(torch.searchsorted(start, start + reach[order, axis],
                                              side="right"), lo)  # [V]
        plan = _SweepPlan(int((hi - lo).sum()), axis, order, lo, hi, reach)
        if best is None or plan.num_pairs < best.num_pairs:
            best = plan
    assert best is not None
    return best


def _sweep_edges(boxes: Tensor, thresh: float, inclusive: bool, plus_one: bool,
                 max_pairs: int, segment: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
    """Overlapping pairs ``(src [E], dst [E])``, ``src < dst``, from the candidate pairs of
    :func:`_sweep_plan`; None above ``max_pairs`` candidate pairs. With ``segment`` (``[N]``
    int64), only pairs of the same segment."""
    num_pairs, axis, order, lo, hi, reach = _sweep_plan(boxes, thresh, plus_one, segment)
    if num_pairs > max_pairs:
        return None
    other = boxes[:, 1 - axis].double()  # [N] start on the other axis: the same bound holds
    src: list[Tensor] = []
    dst: list[Tensor] = []
    ends = torch.cumsum(hi - lo, 0).cpu().numpy()
    cuts = np.searchsorted(ends, np.arange(PAIR_CHUNK, int(ends[-1]) if len(ends) else 0,
                                           PAIR_CHUNK)).tolist()
    for s, e in zip([0, *cuts], [*cuts, len(ends)], strict=True):
        q, p = _expand(lo[s:e], hi[s:e])
        a, b = order[s:e][q], order[p]
        near = (other[a] - other[b]).abs() <= torch.maximum(reach[a, 1 - axis],
                                                            reach[b, 1 - axis])
        if segment is not None:
            near &= segment[a] == segment[b]
        a, b = a[near], b[near]
        i, j = torch.minimum(a, b), torch.maximum(a, b)
        over = _overlaps(pair_iou(boxes[i], boxes[j], plus_one=plus_one), thresh, inclusive)
        src.append(i[over])
        dst.append(j[over])
    empty = torch.empty(0, dtype=torch.int64, device=boxes.device)
    return (torch.cat(src), torch.cat(dst)) if src else (empty, empty)


def _loop_clusters(boxes: Tensor, thresh: float, inclusive: bool, plus_one: bool,
                   max_leaders: int | None = None,
                   max_cost_us: float = math.inf) -> tuple[Tensor, Tensor, Tensor]:
    """The plain greedy loop (the release's), in numpy on the CPU: take the first remaining
    box, compute one IoU row against the remaining ones only (the operations of
    :func:`dsfd.boxes.box_iou` / :func:`dsfd.boxes.box_iou_plus_one`, hence the same bits),
    drop its overlaps, repeat. Stops after ``max_leaders`` leaders, or once its estimated
    cost (:data:`LOOP_US_PER_LEADER`, :data:`LOOP_US_PER_BOX`) passes ``max_cost_us``.

    Returns:
        ``(leaders [L], group [N], rest [R])``: ``group`` is -1 for the boxes not reached,
        ``rest`` the positions, ascending, of the boxes still unresolved when it stopped
        (they overlap none of the leaders found: the greedy clustering of ``boxes[rest]``
        finishes the job).
    """
    b = boxes.detach().cpu().numpy()
    n = b.shape[0]
    offset = 1.0 if plus_one else 0.0
    rest = np.empty((5, n), dtype=b.dtype)  # rows x1, y1, x2, y2, area of remaining boxes
    rest[:4] = b.T
    if plus_one:
        rest[4] = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    else:
        rest[4] = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    index = np.arange(n)  # [M] positions of the remaining boxes
    group = np.full(n, -1, dtype=np.int64)
    leaders: list[int] = []
    tiny = np.finfo(b.dtype).tiny
    limit = n if max_leaders is None else max_leaders
    cost = 0.0
    with np.errstate(all="ignore"):  # NaN / inf boxes follow the matrix functions' IEEE rules
        while index.shape[0] and len(leaders) < limit and cost <= max_cost_us:
            cost += LOOP_US_PER_LEADER + LOOP_US_PER_BOX * index.shape[0]
            lead, other = rest[:, 0], rest[:, 1:]
            group[index[0]] = len(leaders)
            leaders.append(int(index[0]))
            w = np.minimum(other[2], lead[2]) - np.maximum(other[0], lead[0]) + offset
            h = np.minimum(other[3], lead[3]) - np.maximum(other[1], lead[1]) + offset
            inter = np.maximum(w, 0) * np.maximum(h, 0)
            union = lead[4] + other[4] - inter
            if plus_one:
                iou = inter / union
            else:
                iou = np.where(union > 0, inter / np.maximum(union, tiny), 0)
            over = iou >= thresh if inclusive else iou > thresh
            group[index[1:][over]] = len(leaders) - 1
            keep = ~over
            rest, index = other[:, keep], index[1:][keep]
    device = boxes.device
    rest_index = index if len(leaders) < limit else index[:0]
    return (torch.tensor(leaders, dtype=torch.int64, device=device),
            torch.from_numpy(group).to(device), torch.from_numpy(rest_index).to(device))



def _auto_clusters(boxes: Tensor, thresh: float, inclusive: bool, plus_one: bool,
                   max_leaders: int | None, max_pairs: int) -> tuple[Tensor, Tensor]:
    """``"auto"`` on the CPU: the loop while its estimated cost stays under a share of the
    sweep's, the
    sweep on whatever the loop left (the same clustering: the boxes left overlap none of the
    leaders found, so their own greedy clustering continues it)."""
    budget = math.inf
    iou_fn = box_iou_plus_one if plus_one else box_iou
    if boxes.shape[0] and _sparse_allowed(boxes, thresh, iou_fn):
        num_pairs = _sweep_plan(boxes, thresh, plus_one).num_pairs
        if num_pairs <= max_pairs:
            budget = LOOP_BUDGET_SHARE * (SWEEP_US + SWEEP_US_PER_PAIR * num_pairs)
    leaders, group, rest = _loop_clusters(boxes, thresh, inclusive, plus_one, max_leaders,
                                          budget)
    if rest.numel() == 0:
        return leaders, group
    more, more_group = greedy_clusters(boxes[rest], thresh, iou_fn=iou_fn, inclusive=inclusive,
                                       method="sweep", max_pairs=max_pairs)
    group[rest] = more_group + leaders.shape[0]
    leaders = torch.cat((leaders, rest[more]))
    return (leaders, group) if max_leaders is None else (leaders[:max_leaders], group)

def _sequential_leaders(num: int, src: Tensor, dst: Tensor) -> Tensor:
    """The plain greedy loop over an edge list (CPU): ``[num]`` bool leaders."""
    order = torch.argsort(src, stable=True)
    src_np, dst_np = src[order].cpu().numpy(), dst[order].cpu().numpy()
    ptr = np.searchsorted(src_np, np.arange(num + 1))
    removed = np.zeros(num, dtype=bool)
    leader = np.zeros(num, dtype=bool)
    for i in range(num):
        if not removed[i]:
            leader[i] = True
            removed[dst_np[ptr[i]:ptr[i + 1]]] = True
    return torch.from_numpy(leader).to(src.device)


def _leaders_from_edges(num: int, src: Tensor, dst: Tensor) -> Tensor:
    """Greedy leaders (``[num]`` bool) by the fixed-point iteration described above."""
    keep = torch.ones(num, dtype=torch.bool, device=src.device)
    for _ in range(MAX_FIXED_POINT_STEPS):
        suppressed = torch.zeros_like(keep)
        suppressed[dst[keep[src]]] = True
        if torch.equal(~suppressed, keep):
            return keep
        keep = ~suppressed
    return _sequential_leaders(num, src, dst)


def _clusters_from_edges(num: int, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """``(leaders [L], group [num])`` as :func:`greedy_clusters` returns them."""
    leader = _leaders_from_edges(num, src, dst)
    by_leader = leader[src]
    first = torch.arange(num, device=src.device).scatter_reduce(
        0, dst[by_leader], src[by_leader], reduce="amin")  # first leader overlapping each box
    position = torch.cumsum(leader, 0) - 1  # [num] rank of each leader among leaders
    return torch.nonzero(leader).squeeze(1), position[first]


def _resolve_block(over: Tensor, candidate: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy resolution inside one block, on the block's device.

    Args:
        over: ``[B, B]`` bool, ``over[j, i]`` = box j suppresses box i (only ``j < i`` used).
        candidate: ``[B]`` bool, boxes not already claimed by an earlier block's leader.

    Returns:
        ``(leader [B] bool, owner [B] int64)``: owner = index in the block of the claiming
        leader (itself for leaders), -1 for non-candidates.
    """
    over = torch.triu(over, diagonal=1)
    keep = candidate
    for _ in range(MAX_FIXED_POINT_STEPS):
        new = candidate & ~(over & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    else:
        src, dst = torch.nonzero(over & candidate[:, None] & candidate[None, :]).unbind(1)
        keep = _sequential_leaders(over.shape[0], src, dst) & candidate
    claims = over & keep[:, None]  # [B, B] leader j claims box i
    first = claims.to(torch.uint8).argmax(dim=0)  # first claiming leader (0 when none)
    index = torch.arange(over.shape[0], device=over.device)
    owner = torch.where(keep, index, torch.where(candidate, first, -1))
    return keep, owner


def _dense_clusters(boxes: Tensor, iou_thresh: float, iou_fn: IouFn, inclusive: bool,
                    block_size: int) -> tuple[Tensor, Tensor]:
    """The blocked dense path of :func:`greedy_clusters`."""
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
        within = _overlaps(iou_fn(blk, blk), iou_thresh, inclusive)  # [B, B]
        leader, owner = _resolve_block(within, ~claimed)
        rank = torch.cumsum(leader, 0) - 1 + num_leaders  # [B] global leader rank
        mine = owner >= 0
        group[start:start + blk.shape[0]][mine] = rank[owner[mine]]
        local = torch.nonzero(leader).squeeze(1)
        leader_idx.append(local + start)
        num_leaders += local.shape[0]
    leaders = torch.cat(leader_idx) if leader_idx else torch.empty(0, dtype=torch.int64,
                                                                   device=device)
    return leaders, group


def _sparse_allowed(boxes: Tensor, iou_thresh: float, iou_fn: IouFn) -> bool:
    return (iou_fn in (box_iou, box_iou_plus_one) and iou_thresh > 0
            and bool(torch.isfinite(boxes).all()))


def greedy_clusters(
    boxes: Tensor,
    iou_thresh: float,
    *,
    iou_fn: IouFn = box_iou,
    inclusive: bool = False,
    block_size: int = 1024,
    method: str = "auto",
    max_pairs: int = SPARSE_MAX_PAIRS,
    max_leaders: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy clustering of boxes already sorted by descending score.

    Args:
        boxes: ``[N, 4]`` xyxy, sorted by score (best first).
        iou_thresh: overlap threshold.
        iou_fn: pairwise IoU function (``box_iou`` or ``box_iou_plus_one``; any other
            function takes the dense path).
        inclusive: overlap means ``IoU >= thresh`` (box voting) instead of ``> thresh`` (NMS).
        block_size: boxes per block of the dense path.
        method: ``"auto"``, ``"window"``, ``"loop"``, ``"sweep"``, ``"sparse"`` or
            ``"dense"`` (see the module docstring); all give the same result; ``"sparse"``
            and ``"sweep"`` fall back to dense only where they cannot apply or would test more than
            ``max_pairs`` candidate pairs.
        max_pairs: most candidate pairs the sparse and sweep paths test (bounds memory).
        max_leaders: only the first ``max_leaders`` leaders are needed (``"auto"`` and
            ``"loop"`` stop there; ``group`` is then unspecified after them).

    Returns:
        ``(leaders, group)``: ``leaders`` ``[L]`` int64 indices in ascending order;
        ``group`` ``[N]`` int64, the position in ``leaders`` of each box's group.
    """
    if method not in METHODS:
        raise ValueError(f"greedy_clusters method must be one of {METHODS}, got {method!r}")
    if block_size < 1:
        raise ValueError(f"greedy_clusters block_size must be >= 1, got {block_size}")
    standard = iou_fn in (box_iou, box_iou_plus_one)
    if (method in ("auto", "window") and boxes.device.type == "cpu" and boxes.shape[0]
            and _sparse_allowed(boxes, iou_thresh, iou_fn)):
        from dsfd.nms_compiled import window_clusters

        return window_clusters(boxes, iou_thresh, inclusive=inclusive,
                               plus_one=iou_fn is box_iou_plus_one, max_leaders=max_leaders)
    if method in ("auto", "window") and standard and boxes.device.type == "cpu":
        return _auto_clusters(boxes, iou_thresh, inclusive, iou_fn is box_iou_plus_one,
                              max_leaders, max_pairs)
    if method == "loop" and standard:
        leaders, group, _ = _loop_clusters(boxes, iou_thresh, inclusive,
                                           iou_fn is box_iou_plus_one, max_leaders)
        return leaders, group
    n = boxes.shape[0]
    if method == "auto" and n > block_size:
        # few leaders (the dense path's cost grows with them): the first block tells
        first = _overlaps(iou_fn(boxes[:block_size], boxes[:block_size]), iou_thresh,
                          inclusive)
        share = float(_resolve_block(first, torch.ones_like(first[0]))[0].float().mean())
        method = "dense" if share * n <= 4 * block_size else "sparse"
    if method == "sweep" and n and _sparse_allowed(boxes, iou_thresh, iou_fn):
        edges = _sweep_edges(boxes, iou_thresh, inclusive, iou_fn is box_iou_plus_one,
                             max_pairs)
        if edges is not None:
            return _clusters_from_edges(n, *edges)
    if method in ("auto", "sparse") and n and _sparse_allowed(boxes, iou_thresh, iou_fn):
        try:
            edges = _sparse_edges(boxes, iou_thresh, inclusive, iou_fn is box_iou_plus_one,
                                  max_pairs)
        except OverflowError:
            edges = None
        if edges is not None:
            return _clusters_from_edges(boxes.shape[0], *edges)
    return _dense_clusters(boxes, iou_thresh, iou_fn, inclusive, block_size)


def sort_by_score(scores: Tensor) -> Tensor:
    """Indices ordering ``scores`` descending; ties keep input order (stable)."""
    return torch.sort(scores, descending=True, stable=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_thresh: float = 0.3, *,
        block_size: int = 1024, method: str = "auto", max_kept: int | None = None) -> Tensor:
    """Greedy non-maximum suppression: a box is dropped when ``IoU > iou_thresh`` (no ``+1``)
    with a higher-scored kept box.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        iou_thresh: suppression threshold.
        block_size: see :func:`greedy_clusters` (memory/speed only, same result).
        method: see :func:`greedy_clusters` (speed only, same result).
        max_kept: return only the first ``max_kept`` kept boxes (the same as slicing the
            full result; the loop stops there).

    Returns:
        ``[K]`` int64 indices of kept boxes, by descending score.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = sort_by_score(scores)
    leaders, _ = greedy_clusters(boxes[order], iou_thresh, iou_fn=box_iou, inclusive=False,
                                 block_size=block_size, method=method, max_leaders=max_kept)
    return order[leaders[:max_kept]]


def box_vote(dets: Tensor, iou_thresh: float = 0.3, top_k: int | None = 750, *,
             block_size: int = 1024, method: str = "auto") -> Tensor:
    """Box voting of the official WIDER FACE test script (``bbox_vote``).

    Boxes sorted by score; each leader takes all remaining boxes with ``IoU >= iou_thresh``
    (``+1`` convention); groups of one box are dropped; a group gives the score-weighted mean
    of its coordinates and its maximum score. Output in leader order, first ``top_k`` kept.

    Args:
        dets: ``[N, 5]`` ``(x1, y1, x2, y2, score)``.
        iou_thresh: grouping threshold.
        top_k: boxes kept (None keeps all).
        block_size: see :func:`greedy_clusters` (memory/speed only, same result).
        method: see :func:`greedy_clusters` (speed only, same result).

    Returns:
        ``[K, 5]`` float32 in the same layout, computed in float64.
    """
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"box_vote expects [N, 5] detections, got {tuple(dets.shape)}")
    d = dets.double()[sort_by_score(dets[:, 4])]
    if d.shape[0] == 0:
        return dets.new_zeros((0, 5), dtype=torch.float32)
    leaders, group = greedy_clusters(d[:, :4], iou_thresh, iou_fn=box_iou_plus_one,
                                     inclusive=True, block_size=block_size, method=method)
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


def batched_nms(boxes: Tensor, scores: Tensor, segments: Tensor, iou_thresh: float = 0.3, *,
                max_kept: int | None = None, max_pairs: int = SPARSE_MAX_PAIRS) -> Tensor:
    """:func:`nms` of many images at once, in tensor code on the boxes' device.

    Boxes of different segments (images) never suppress each other; within a segment the kept
    set is exactly :func:`nms`'s (the IoU of a candidate pair has the bits of ``box_iou``).
    Candidate pairs come from one sweep over all segments (:func:`_sweep_plan` with the
    segments laid apart), the greedy pass is the fixed point of step 2.

    Args:
        boxes: ``[N, 4]`` xyxy, finite.
        scores: ``[N]``.
        segments: ``[N]`` int64 image index of each box.
        iou_thresh: suppression threshold (``IoU > iou_thresh``), ``> 0``.
        max_kept: boxes kept per segment (None: all).
        max_pairs: most candidate pairs of the sweep; above it each segment runs alone.

    Returns:
        ``[K]`` int64 indices of kept boxes, by segment, then by descending score.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = sort_by_score(scores)
    order = order[torch.sort(segments[order], stable=True).indices]  # [N] segment, score
    b, seg = boxes[order], segments[order]
    edges = None
    if _sparse_allowed(b, iou_thresh, box_iou):
        edges = _sweep_edges(b, iou_thresh, False, False, max_pairs, seg)
    if edges is None:  # each segment on its own
        parts = [torch.nonzero(seg == s).squeeze(1) for s in torch.unique(seg).tolist()]
        kept = [part[greedy_clusters(b[part], iou_thresh, method="dense")[0][:max_kept]]
                for part in parts]
        return order[torch.cat(kept)]
    leaders = torch.nonzero(_leaders_from_edges(b.shape[0], *edges)).squeeze(1)  # [L]
    if max_kept is not None:
        lead_seg = seg[leaders]  # ascending
        rank = (torch.arange(leaders.shape[0], device=b.device)
                - torch.searchsorted(lead_seg, lead_seg, side="left"))  # rank in its segment
        leaders = leaders[rank < max_kept]
    return order[leaders]
