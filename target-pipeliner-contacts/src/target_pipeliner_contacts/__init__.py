"""target-pipeliner-contacts: contacts written into Pipeliner CRM through the contactsync engine."""
