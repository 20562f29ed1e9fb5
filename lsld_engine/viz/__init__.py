"""Figures of results (matplotlib, Agg backend, imported only when a figure is drawn).

- :mod:`~lsld_engine.viz.timeline`: one video's audio / visual / audio-visual events over time;
- :mod:`~lsld_engine.viz.denoise_view`: DeN prompt choices and ReW soft labels of a training video;
- :mod:`~lsld_engine.viz.scores`: per-class F1 bars, the confusion view, similarity distributions;
- :mod:`~lsld_engine.viz.curves`: training curves and the Table-2 ablation chart;
- :mod:`~lsld_engine.viz.report`: the static HTML report of ``lsld-engine eval --report``.

Nothing here imports matplotlib at module import time: ``lsld-engine eval`` without plots stays light.
"""
