"""The app's tests (rdexpert.app), one file per app module or concern.

Why this is a package: pytest (``testpaths = ["tests"]``, the default "prepend"
import mode) imports a ``conftest.py`` outside a package under the module name
``conftest``, so a second one, here, would replace ``tests/conftest.py`` in
``sys.modules`` for every test module collected after it. As a package its
modules are ``app.conftest``, ``app.support``, ``app.test_*``: no name clashes
with ``tests/``, and ``tests/`` stays on ``sys.path`` (``from helpers import``).
"""
