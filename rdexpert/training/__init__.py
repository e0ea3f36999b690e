"""Training: the loop, its configuration and recipe, the losses, the health check, many categories, DDP.

Modules are imported by their full name (``rdexpert.training.loop``); nothing is imported here, so that a
light module (the recipe table) never pulls in the whole trainer.
"""
