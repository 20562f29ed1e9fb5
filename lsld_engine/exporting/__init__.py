"""The ONNX export core (library side of `lsld-engine export` and of the ``--backend auto`` export cache).

- :mod:`lsld_engine.exporting.networks` — the networks' I/O contract, exportable modules, example inputs;
- :mod:`lsld_engine.exporting.onnx_export` — one network to ONNX (pinned opset, dynamic batch), fp16 copies;
- :mod:`lsld_engine.exporting.parity` — an exported file against its PyTorch module;
- :mod:`lsld_engine.exporting.folder` — one export folder: files, parity, ``manifest.json``.

The top-level ``export`` package is the user entry point (``python -m export``) and keeps its old
module names as aliases of these.
"""
