//! End-to-end harness (filled by the integration work).
