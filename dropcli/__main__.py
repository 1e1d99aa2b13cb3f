"""`python -m dropcli`: the same command line as the `dropcli` console script."""

from dropcli.cli import main

main()
