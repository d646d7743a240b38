"""tap-pipeliner-contacts: Pipeliner CRM contacts as a Singer stream."""
