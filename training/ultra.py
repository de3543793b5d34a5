"""The ultralytics pieces training uses, imported only after liverview.engine.yolo has set it offline.

liverview.engine.yolo is the one place that configures ultralytics (YOLO_OFFLINE, its config
folder) and builds the detector; training goes through it, then takes the trainer, dataset
and image utilities from ultralytics itself.
"""

from __future__ import annotations

from liverview.engine import yolo as engine_yolo  # noqa: F401  (sets YOLO_OFFLINE / YOLO_CONFIG_DIR first)
from liverview.engine.yolo import build_detector, detect, detector_from_state  # noqa: E402,F401
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402,F401
from ultralytics.utils.patches import imread  # noqa: E402,F401
