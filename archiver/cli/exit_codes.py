"""The exit codes of every command (documented in the README's CLI section)."""

EXIT_OK = 0
EXIT_FAILURE = 1  # the work failed (GWS, the archive, a hook)
EXIT_USAGE = 2  # bad arguments or configuration; a second daemon on one archive
EXIT_INTERRUPTED = 130  # SIGINT during a read command
