"""`python -m srlm_lite`: the srlm-lite command line."""

from srlm_lite.cli.main import main

if __name__ == "__main__":
    main()
