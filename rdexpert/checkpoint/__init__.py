"""Checkpoints: the folder format (config.json + safetensors), atomic file writes, saving and loading.

Only safetensors and JSON are ever read from a checkpoint. Modules are imported by their full name
(``rdexpert.checkpoint.folder``); nothing is imported here, so that the file helpers stay light.
"""
