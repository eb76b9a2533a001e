"""Plain-text prompt templates and the seed prompt pool shipped with srlm-lite."""
