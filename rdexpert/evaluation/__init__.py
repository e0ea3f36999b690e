"""Evaluation: the metrics (AUROC, AUPRO, ...), scoring a labelled test split, reports and pictures."""
