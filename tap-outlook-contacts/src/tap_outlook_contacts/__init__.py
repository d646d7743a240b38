"""tap-outlook-contacts: one personal Outlook contacts folder as a Singer stream."""
