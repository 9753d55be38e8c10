"""Metrics, figures and reports from run directories (no torch, no Ray).

- :mod:`reports.wider`: WIDER FACE AP, digit for digit as the official tools compute it
  (``evaluate_run``);
- :mod:`reports.fddb`: FDDB ROC, byte for byte as the official program writes it
  (``evaluate_run``);
- :mod:`reports.figures`: drawing only (PR and ROC curves, score histograms, matched anchors,
  galleries of mistakes);
- :mod:`reports.report`: the HTML page and its Markdown summary (``dsfd report``).
"""
