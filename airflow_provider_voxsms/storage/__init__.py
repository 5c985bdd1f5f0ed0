"""Every table the provider reads or writes, on any common-sql connection."""
