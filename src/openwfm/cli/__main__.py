"""``python -m openwfm.cli`` (torchrun uses it too)."""

from openwfm.cli import main

main()
