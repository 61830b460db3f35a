"""Jobs: the SQLite journal and the runner that submits, polls and wakes waiting calls."""
