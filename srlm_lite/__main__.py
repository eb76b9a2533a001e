"""`python -m srlm_lite`: the srlm-lite command line (installed, or from a source checkout)."""

from srlm_lite._checkout import map_checkout_packages

map_checkout_packages()

from srlm_lite.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main()
