"""``python -m bert_cli`` runs the same app as the ``bert`` script."""

from bert_cli.main import main

if __name__ == "__main__":
    main()
