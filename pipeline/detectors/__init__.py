"""Face detectors behind one protocol (:class:`FaceDetector`), opened from a model spec.

``open_detector(spec, device=...)`` dispatches on the registered spec forms; the DSFD family
(model names, ``shipped``, our checkpoints, ``release-r152:PATH``) is one implementation. The
Ray actor, ``dsfd detect`` and ``dsfd run``'s driver check depend on the protocol only. A new
detector family is one module plus one ``register_detector(...)`` line.
"""

from pipeline.detectors.base import FaceDetector, open_detector, register_detector

__all__ = ["FaceDetector", "open_detector", "register_detector"]
