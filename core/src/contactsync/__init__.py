"""contactsync: the domain of the Pipeliner CRM <-> Outlook contacts sync.

Nothing in this package imports Singer: the plugins are thin adapters over it.
"""

__version__ = "0.1.0"
