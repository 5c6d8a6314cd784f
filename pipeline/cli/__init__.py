"""The command-line programs: thin layers over the Python API and the pipeline.

Each module has ``main(argv) -> exit code`` and ``cli()`` (the console script:
``detect``, ``train``, ``evaluate``); the repository's ``detect.py``, ``train.py`` and
``evaluate.py`` call the same ``cli``. Exit codes: 0 done, 1 some input images could not
be read (the rest were processed), 2 a user error (one line on stderr, nothing half
written), 130 interrupted.
"""
