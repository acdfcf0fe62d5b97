"""`python -m dms.cli`: the same as `nunet`."""

from dms.cli.main import run

run()
