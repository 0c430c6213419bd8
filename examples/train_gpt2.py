"""Train a small byte-level GPT-2 with Orchard; the same as `python -m orchard.train` (see --help)."""
from orchard.train import main

if __name__ == "__main__":
    main()
