//! Reference VMM composing the workspace crates
