"""`python -m mijabench`: the same as the `mijabench` command."""

from .cli.launch import app

if __name__ == "__main__":
    app()
