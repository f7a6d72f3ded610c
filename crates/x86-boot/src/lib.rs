//! x86-64 boot state for KVM guests: long-mode entry, page tables, GDT
