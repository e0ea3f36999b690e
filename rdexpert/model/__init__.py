"""The RD with Expert network: backbone features -> OCBE -> decoder (+ GII) -> anomaly maps."""

from .anomaly_map import AnomalyMaps, compute_anomaly_maps
from .ets import REFERENCES, VARIANTS, ETSOutput, ExpertTeacherStudent, ModelConfig, Variant
from .gii import GATES, capture_gates

__all__ = [
    "AnomalyMaps",
    "ETSOutput",
    "ExpertTeacherStudent",
    "GATES",
    "ModelConfig",
    "REFERENCES",
    "VARIANTS",
    "Variant",
    "capture_gates",
    "compute_anomaly_maps",
]
