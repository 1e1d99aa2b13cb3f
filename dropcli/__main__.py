"""`python -m dropcli`: the same command line as the `dropcli` console script."""

from dropcli.entry import main

main()
