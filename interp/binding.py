"""`python -m interp.binding CONFIG`: the binding study (section C of the brief), end to end (a
shim for ``python -m interp.studies.binding``; see :mod:`interp.studies.binding.__main__`)."""

from interp.studies.binding.__main__ import main

if __name__ == "__main__":
    main()
