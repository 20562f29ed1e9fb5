"""Export CLIP, CLAP and HAN to ONNX / TensorRT (`lsld-engine export`, alias `python -m export`): the user entry point.

The ONNX export core lives in the library, :mod:`lsld_engine.exporting` (the export cache of
``--backend auto`` runs it too); the names below stay as aliases of those modules:

- :mod:`export.networks` — the three networks' input/output contract, builders, example inputs;
- :mod:`export.onnx_export` — one network to ONNX (opset 18, dynamic batch, embedded weights), fp16 copies;
- :mod:`export.parity` — exported file vs PyTorch: max abs / relative error, bounds, HAN event agreement;
- :mod:`export.folder` — one export folder: the files, parity, `manifest.json`;
- :mod:`export.tensorrt_build` — the TensorRT builder (engine names and the runtime: :mod:`lsld_engine.backends`).

See ``docs/export.md``.
"""
