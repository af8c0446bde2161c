"""``amplink bench``: the message path, the mailbox, interrupt delivery, the lifecycle and
a Linux guest, each next to a baseline measured in the same run."""
