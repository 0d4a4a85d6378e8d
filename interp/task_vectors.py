"""`python -m interp.task_vectors CONFIG`: cross-modal task vectors and function vectors (a
shim for ``python -m interp.studies.task_vectors``; see
:mod:`interp.studies.task_vectors.__main__`)."""

from interp.studies.task_vectors.__main__ import main

if __name__ == "__main__":
    main()
