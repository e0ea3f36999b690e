"""Inference: the Predictor and its backends, scoring, the decision threshold, the out-of-distribution check, export.

Modules are imported by their full name (``rdexpert.inference.predictor``); nothing is imported here, so that
training can use the threshold rule without loading the Predictor.
"""
