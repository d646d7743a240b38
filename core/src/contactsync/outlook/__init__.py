"""Outlook contacts through Microsoft Graph, the address-book side: the Graph client and its
sign-in, its projection of the field table, its records, its folder binding and destination."""

from contactsync.sync.link import Side, name_side

name_side(Side.BOOK, "outlook", "Outlook")
