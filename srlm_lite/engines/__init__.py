"""Inference engines: llama.cpp samples and judges."""
