"""`python -m interp.alignment CONFIG`: the visual-alignment study's command (a shim for
``python -m interp.studies.alignment``; see :mod:`interp.studies.alignment.__main__`)."""

from interp.studies.alignment.__main__ import main

if __name__ == "__main__":
    main()
