"""The notebooks' tables and plots, one module per stage: ``data`` and ``speech`` (notebook 01),
``sen`` (02), ``gan`` (03), ``evaluation`` (04). They read a profile's run folders and the models
in them, and compute what a notebook shows; the notebook narrates.

They sit above the steps (``.importlinter``): a report may read a ``Config`` and the run folders,
and no code of the library imports a report but another report, the demo and the notebook helpers.
Nothing is imported here: ``from s2i_lib.reports import sen as report``.
"""
