"""Slow reference transcriptions used only as test oracles and benchmark baselines.

They are obviously right rather than fast, and nothing in the packages imports them:

- ``nms_reference``: ssd.pytorch's greedy NMS and the official ``bbox_vote``, one box at a time;
- ``wider_reference``: the two WIDER FACE evaluators (official MATLAB tools, Python port);
- ``fddb_overlap_reference``: FDDB pixel-mask overlaps on whole-image canvases.
"""
