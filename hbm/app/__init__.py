"""Stage 6, app: the command line and the HTTP service."""
