"""dropcli: dropout ablations on MNIST, reproducing the classic TensorFlow dropout tutorial.

    $ dropcli train --keep-prob 0.7
    $ dropcli ablate --grid
"""

__version__ = "0.1.0"
