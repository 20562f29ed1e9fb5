"""Export CLIP, CLAP and HAN to ONNX / TensorRT: ``python -m export``."""
