"""Checkpoints on the Hugging Face Hub: one model repo, one subfolder per category.

* :mod:`.resolve`: Hub addresses ``ORG/NAME/CATEGORY[@REVISION]`` to local
  folders, through huggingface_hub's cache and downloads (what loading needs);
* :mod:`.publish`: model cards, staging and upload (``rdexpert push``); import it
  from ``rdexpert.hub.publish`` - loading a checkpoint never imports it.
"""

from rdexpert.hub.resolve import HubError, HubAddress, list_repo_categories, parse_hub_address, resolve_checkpoint

__all__ = ["HubError", "HubAddress", "list_repo_categories", "parse_hub_address", "resolve_checkpoint"]
