"""srlm-lite: Self-Rewarding Language Models (Yuan et al. 2024) on a laptop CPU."""

__version__ = "0.1.0"
