from dropcli.cli import main

main()
