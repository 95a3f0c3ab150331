"""Analysis of an evaluated run: AP by DF2 attribute and source, TIDE error split, category confusion,
galleries, and the HTML report (``build_report``) and run comparison (``compare_runs``).

Modules: ``subsets`` (AP per subset of the GT), ``errors`` (TIDE, confusion matrix, worst images),
``galleries`` (GT-versus-prediction overlays chosen automatically), ``plots`` (matplotlib figures),
``html`` (page building blocks), ``run`` (reading a run folder), ``report`` (the pages), ``commands``
(the ``report`` and ``compare`` click commands).
"""
