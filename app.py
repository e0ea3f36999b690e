"""rdexpert demo app: ``python app.py [--checkpoints DIR] [--hub-repo ORG/NAME] [--host H] [--port P] [--share]``.

Everything lives in the package (rdexpert.app); this file only exposes ``demo``
for Hugging Face Spaces and the ``main()`` entry point.
"""

from pathlib import Path

from rdexpert.extras import MissingExtra

try:
    from rdexpert.app import build_app
    from rdexpert.app import main as _main
except MissingExtra as error:  # the [app] extra is missing: its one line, not a traceback
    raise SystemExit(f"app.py: {error}") from None

ROOT = Path(__file__).resolve().parent

demo = build_app(root=ROOT)


def main(argv=None):
    return _main(argv, demo=demo, root=ROOT)


if __name__ == "__main__":
    main()
