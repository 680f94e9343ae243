//! Objects' invoices and receipts (placeholder, filled in below).
