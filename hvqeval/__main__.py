"""``python -m hvqeval`` runs the same CLI as the ``hvqeval`` console command."""

from hvqeval.cli import main

if __name__ == "__main__":
    main()
