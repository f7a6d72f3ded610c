//! Checks on the embedded machine code itself (no KVM needed).

use iced_x86::{Decoder, DecoderOptions, Formatter, Mnemonic, NasmFormatter};
use probe_guest::abi::{CODE_GPA, CODE_SIZE};
use probe_guest::PROBE_CODE;

fn decode() -> Vec<iced_x86::Instruction> {
    let mut d = Decoder::with_ip(64, PROBE_CODE, CODE_GPA, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
}

#[test]
fn code_decodes_completely_and_fits() {
    assert!(!PROBE_CODE.is_empty());
    assert!(PROBE_CODE.len() as u64 <= CODE_SIZE);
    let mut f = NasmFormatter::new();
    for i in decode() {
        let mut s = String::new();
        f.format(&i, &mut s);
        assert!(!i.is_invalid(), "invalid instruction at {:#x}", i.ip());
        println!("{:#08x} {s}", i.ip());
    }
}

#[test]
fn code_avoids_instructions_the_kvm_emulator_cannot_run() {
    // HOST.md: KVM's emulator stops on these at CPL0 (internal error).
    let forbidden = [
        Mnemonic::Int3,
        Mnemonic::Xgetbv,
        Mnemonic::Cmpxchg16b,
        Mnemonic::Clac,
        Mnemonic::Stac,
        Mnemonic::Xrstor,
        Mnemonic::Popcnt,
    ];
    for i in decode() {
        assert!(
            !forbidden.contains(&i.mnemonic()),
            "{:?} at {:#x}",
            i.mnemonic(),
            i.ip()
        );
    }
}

#[test]
fn code_has_the_mode_landmarks() {
    let m: Vec<Mnemonic> = decode().iter().map(|i| i.mnemonic()).collect();
    for want in [
        Mnemonic::Cpuid,
        Mnemonic::Out,
        Mnemonic::Iretq,
        Mnemonic::Ud2,
        Mnemonic::Xadd,
        Mnemonic::Hlt,
    ] {
        assert!(m.contains(&want), "{want:?} missing");
    }
    // Exactly one doorbell write per message site: report, done (CPL0), done (CPL3),
    // ping (exits mode).
    assert_eq!(m.iter().filter(|&&x| x == Mnemonic::Out).count(), 4);
}
