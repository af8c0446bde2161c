"""How a waiter waits: adaptive spin-then-block.

Notifications themselves travel through the mailbox and interrupt layers
(:mod:`amplink.mailbox.mu_path`); this package holds the policy that decides when a
waiter polls shared memory instead of waiting for one.
"""

from amplink.transport.spin import AdaptiveSpin, spin_worthwhile

__all__ = ["AdaptiveSpin", "spin_worthwhile"]
