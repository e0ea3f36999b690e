"""The RD with Expert network: backbone features -> OCBE -> decoder (+ GII) -> anomaly maps."""

from rdexpert.model.anomaly_map import AnomalyMaps, compute_anomaly_maps
from rdexpert.model.ets import REFERENCES, VARIANTS, ETSOutput, ExpertTeacherStudent, ModelConfig, Variant
from rdexpert.model.gii import GATES, capture_gates

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
