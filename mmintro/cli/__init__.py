"""The ``mmintro`` command line (entry point :func:`mmintro.cli.main.main`)."""
