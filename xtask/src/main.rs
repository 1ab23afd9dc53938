//! Placeholder: filled by a later change.
fn main() {}
