"""`python -m interp.run CONFIG`: run a taxonomic study config end to end (a shim for
``python -m interp.studies.taxonomy``; see :mod:`interp.studies.taxonomy.__main__`)."""

from interp.studies.taxonomy.__main__ import main

if __name__ == "__main__":
    main()
