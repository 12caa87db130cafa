"""`python -m edgekd.cli`."""

from edgekd.cli.app import main

main()
