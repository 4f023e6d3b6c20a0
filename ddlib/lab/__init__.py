"""The report lab: what exists only to produce ``reports/<profile>/`` from the numbered notebooks.

The pipeline runs the notebooks with papermill (:mod:`ddlib.lab.pipeline`); each notebook opens a
:class:`~ddlib.lab.context.Context` (output folder, device, provenance) and calls one function per step from
:mod:`ddlib.lab.experiments`, whose expensive parts are cached by config hash (:mod:`ddlib.lab.cache`).
Figures and tables are drawn by :mod:`ddlib.lab.figures` and :mod:`ddlib.lab.tables`, the report page is
assembled by :mod:`ddlib.lab.assemble` and exported by :mod:`ddlib.lab.export`. The core library never
imports this package.
"""
