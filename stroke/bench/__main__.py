"""`python -m stroke.bench [overrides]`: the same as the `stroke-bench` console script."""

from stroke.bench.cli import main

if __name__ == "__main__":
    main()
