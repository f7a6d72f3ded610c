//! `virsh domxml-to-native`-style: prints the `vmm-reference` command line of a domain XML
//! file, the warning line for what it ignores, and the notes.
//!
//! ```text
//! cargo run -p libvirt-domain --example domxml_to_native -- crates/libvirt-domain/tests/fixtures/seed_westmere.xml
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: domxml_to_native DOMAIN.xml");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    let domain = match libvirt_domain::parse_domain(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let cmd = libvirt_domain::to_native(&domain, &Default::default());
    println!("{}", cmd.to_shell("vmm-reference"));
    if let Some(w) = domain.ignored_warning() {
        eprintln!("warning: {w}");
    }
    for note in &cmd.notes {
        eprintln!("note: {note}");
    }
    ExitCode::SUCCESS
}
