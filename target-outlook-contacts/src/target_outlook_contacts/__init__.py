"""target-outlook-contacts: contacts written into one Outlook folder by the contactsync engine."""
