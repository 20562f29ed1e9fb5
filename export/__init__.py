"""Export CLIP, CLAP and HAN to ONNX / TensorRT: ``python -m export`` (= ``lsld-engine export``).

- :mod:`export.networks` — the three networks' input/output contract, builders, example inputs;
- :mod:`export.onnx_export` — one network to ONNX (opset 18, dynamic batch, embedded weights), fp16 copies;
- :mod:`export.parity` — exported file vs PyTorch: max abs / relative error, bounds, HAN event agreement;
- :mod:`export.tensorrt_build` — TensorRT engines from the ONNX files (not run here: no TensorRT).

See ``docs/export.md``.
"""
