"""Segment-level labels from language: prompts, DeN + ReW denoising, their kernels and reference."""
