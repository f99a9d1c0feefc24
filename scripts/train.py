"""Train the two-layer net with Lightning: `python scripts/train.py fit --config lightning_ref/recipes/cifar10.yaml`.

The same as the console script manualnet-train (lightning_ref.cli.main); --help lists every option.
"""

from lightning_ref.cli import main

if __name__ == "__main__":
    main()
