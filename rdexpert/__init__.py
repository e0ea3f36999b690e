"""rdexpert: RD with Expert (Expert-Teacher-Student reverse distillation) for anomaly detection."""

__version__ = "0.1.0"
