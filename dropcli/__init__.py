"""dropcli: dropout ablations on MNIST, reproducing the classic TensorFlow dropout tutorial.

    $ dropcli train --keep-prob 0.7
    $ dropcli ablate --grid

Importing dropcli asks MKL for conditional numerical reproducibility (MKL_CBWR=AUTO,STRICT)
before torch loads it: without it, MKL's sgemm results can depend on memory alignment, so a cell
trained at another position of a lockstep group would differ in the last bits. MKL reads the
setting once, at its first call; a program that imports torch and runs a matmul before importing
dropcli must set MKL_CBWR=AUTO,STRICT in the environment itself (dropcli.provenance checks it and
warns when it is missing).
"""

import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
