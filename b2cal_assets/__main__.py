"""`python -m b2cal_assets` is the same as `b2cal`."""

from b2cal_assets.cli import main

main()
