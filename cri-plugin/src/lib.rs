//! Placeholder: this component is specified by its own issue and not built yet.
