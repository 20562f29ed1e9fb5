"""Export CLIP, CLAP and HAN to ONNX / TensorRT (`lsld-engine export`, alias `python -m export`); builds on the library.

- :mod:`export.networks` — the three networks' input/output contract, builders, example inputs;
- :mod:`export.onnx_export` — one network to ONNX (opset 18, dynamic batch, embedded weights), fp16 copies;
- :mod:`export.parity` — exported file vs PyTorch: max abs / relative error, bounds, HAN event agreement;
- :mod:`export.tensorrt_build` — the TensorRT builder (engine names and the runtime: :mod:`lsld_engine.backends`);
- :mod:`export.folder` — one export folder: the files, parity, `manifest.json`.

See ``docs/export.md``.
"""
