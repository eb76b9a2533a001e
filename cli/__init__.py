"""srlm-lite command line (click + rich); thin wrappers over the library."""
