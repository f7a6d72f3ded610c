#![no_main]
//! The QMP monitor's input side: the JSON stream framer, request validation, the `--qmp`
//! option and the HMP `xp` format/address parsers; and the `--serial` option, the other
//! chardev-like grammar. None may panic on any input, and a `--serial` value that parses
//! prints back as one that parses the same.
use libfuzzer_sys::fuzz_target;
use vmm_reference::linux::{parse_serial, SerialOutput};
use vmm_monitor::hmp::{parse_address, parse_xp_format};
use vmm_monitor::parse_qmp_option;
use vmm_monitor::protocol::{parse_request, JsonStream};

fuzz_target!(|data: &[u8]| {
    // Feed the stream in two pieces, as a socket may deliver it.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut stream = JsonStream::new();
    stream.push(&data[..split]);
    stream.push(&data[split..]);
    while let Some(value) = stream.next_value() {
        if let Ok(v) = value {
            let _ = parse_request(v);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_qmp_option(text);
        let _ = parse_xp_format(text);
        let _ = parse_address(text);
        if let Ok(SerialOutput::Socket(server)) = parse_serial(text) {
            let again = format!(
                "{},server,wait={}",
                server.address,
                if server.wait { "on" } else { "off" }
            );
            assert_eq!(
                parse_serial(&again),
                Ok(SerialOutput::Socket(server)),
                "{again}"
            );
        }
    }
});
