"""The sync kernel: two sides known by role (the CRM, authority on rights and scope, and the
address book), the field table, links and their ledger, the plan, the merge, the engine.

It imports no service package and names no vendor (tests/unit/test_kernel_boundary.py checks
it): a service plugs in through its projection of the field table, its record shape and a
``Destination`` (``contactsync.sync.engine``).
"""
