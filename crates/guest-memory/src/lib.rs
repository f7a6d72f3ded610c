//! Guest memory for KVM: -m grammar, x86-64 layout, mmap backing, KVM slots, address translation
