"""The operator's tools: the `contactsync` CLI, the users' registry, the `meltano run` runner and
the space's secrets."""
