"""`python -m interp.analyze CHECKPOINT`: look inside a trained VLM (a shim for
``python -m interp.studies.inside``; see :mod:`interp.studies.inside.__main__`)."""

from interp.studies.inside.__main__ import main

if __name__ == "__main__":
    main()
