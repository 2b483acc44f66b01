"""``python -m hydrarec`` (and ``torchrun -m hydrarec``) runs the command line."""

from hydrarec.cli import main

main()
