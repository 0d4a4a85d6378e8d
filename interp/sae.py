"""`python -m interp.sae CONFIG`: the SAE study's command (a shim for
``python -m interp.studies.sae``; see :mod:`interp.studies.sae.__main__`)."""

from interp.studies.sae.__main__ import main

if __name__ == "__main__":
    main()
