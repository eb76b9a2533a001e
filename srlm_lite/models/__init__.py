"""Models: GGUF files found and inspected, the MLX model built from them, their tokenizer and chat template."""
