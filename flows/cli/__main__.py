"""`python -m flows.cli ...` is `styleops ...`."""

from flows.cli import app

app()
