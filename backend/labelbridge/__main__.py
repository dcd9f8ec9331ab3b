"""``python -m labelbridge``: the same command as ``labelbridge``."""

from labelbridge.service.cli import app

if __name__ == "__main__":
    app(prog_name="labelbridge")
