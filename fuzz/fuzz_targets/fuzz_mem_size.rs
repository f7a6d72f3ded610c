//! Feeds arbitrary text to the `-m` size parsers: they must never panic, and what they
//! accept must satisfy their documented contract.
#![no_main]
use guest_memory::size::{
    format_size_arg, parse_mem_size, parse_size, MAX_MEM_SIZE, MEM_SIZE_ALIGN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = parse_size(text) {
        // Whatever parses formats back to text naming the same bytes.
        assert_eq!(parse_size(&format_size_arg(bytes)), Ok(bytes));
    }
    if let Ok(bytes) = parse_mem_size(text) {
        assert!(bytes > 0 && bytes <= MAX_MEM_SIZE);
        assert_eq!(bytes % MEM_SIZE_ALIGN, 0);
        assert_eq!(parse_mem_size(&format_size_arg(bytes)), Ok(bytes));
    }
});
