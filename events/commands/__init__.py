"""Command handlers: load, decide (the pure functions beside each stream kind's events), append,
with the write-side guard tables in the same transaction. The API, the command line and the workers
all change the system through these, and only through these."""
