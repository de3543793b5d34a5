"""The sub-commands of `python -m training`, one module each (configure(parser), run(args))."""
