//! Assembles the probe guest with iced-x86's `CodeAssembler` and writes the
//! machine code to `$OUT_DIR/probe_guest.bin`, which the library embeds.
//!
//! See DESIGN.md for the register contract and the memory map; every offset
//! used here comes from `src/abi.rs`, shared with the library.

#![allow(dead_code)]

use std::env;
use std::fs;
use std::path::PathBuf;

use iced_x86::code_asm::*;

mod abi {
    include!("src/abi.rs");
}
use abi::*;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/abi.rs");
    let code = match assemble() {
        Ok(code) => code,
        Err(e) => panic!("assembling the probe guest failed: {e}"),
    };
    assert!(
        code.len() as u64 <= CODE_SIZE,
        "probe guest code ({} bytes) exceeds CODE_SIZE ({CODE_SIZE})",
        code.len()
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("probe_guest.bin"), code).expect("writing probe_guest.bin");
}

/// Pushes an `iretq` frame and drops to CPL3 at `target`, with the user stack
/// of this vCPU's area. Registers other than RAX survive the switch.
fn enter_user(a: &mut CodeAssembler, target: CodeLabel) -> Result<(), IcedError> {
    a.push(i32::from(SEL_USER_DATA))?;
    a.lea(rax, ptr(r15 + VA_USER_STACK_TOP))?;
    a.push(rax)?;
    a.push(USER_RFLAGS as i32)?;
    a.push(i32::from(SEL_USER_CODE))?;
    a.lea(rax, ptr(target))?;
    a.push(rax)?;
    a.iretq()
}

/// Stores `code` as the stage word and rings the doorbell with it.
fn ring(a: &mut CodeAssembler, code: u32) -> Result<(), IcedError> {
    a.mov(eax, code)?;
    a.mov(dword_ptr(r15 + VA_STAGE), eax)?;
    a.mov(edx, u32::from(DOORBELL_PORT))?;
    a.out(dx, eax)
}

fn assemble() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut report = a.create_label();
    let mut spin = a.create_label();
    let mut barrier = a.create_label();
    let mut bad_fetch = a.create_label();
    let mut exits = a.create_label();
    let mut exits_user = a.create_label();
    let mut spin_user = a.create_label();
    let mut barrier_user = a.create_label();
    let mut user_done = a.create_label();

    // ---- Entry, CPL0: RDI = index, RSI = area, RDX = control block, RSP = CPL0 stack.
    a.mov(r15, rsi)?;
    a.mov(r14, rdx)?;
    a.mov(dword_ptr(r15 + VA_INDEX), edi)?;
    a.mov(eax, dword_ptr(r14 + CTL_MODE))?;
    a.cmp(eax, MODE_REPORT)?;
    a.je(report)?;
    a.cmp(eax, MODE_SPIN)?;
    a.je(spin)?;
    a.cmp(eax, MODE_BARRIER)?;
    a.je(barrier)?;
    a.cmp(eax, MODE_BAD_FETCH)?;
    a.je(bad_fetch)?;
    a.cmp(eax, MODE_EXITS)?;
    a.je(exits)?;
    // MODE_TRIPLE_FAULT and any unknown mode: #UD with no IDT -> shutdown.
    a.ud2()?;

    // ---- Report, CPL0: one CPUID per query, results into the area, one doorbell.
    a.set_label(&mut report)?;
    let mut clamped = a.create_label();
    let mut next = a.create_label();
    let mut reported = a.create_label();
    a.mov(r8, qword_ptr(r14 + CTL_QUERY_LIST))?;
    a.mov(r9d, dword_ptr(r14 + CTL_QUERY_COUNT))?;
    a.cmp(r9d, MAX_QUERIES)?;
    a.jbe(clamped)?;
    a.mov(r9d, MAX_QUERIES)?;
    a.set_label(&mut clamped)?;
    a.lea(r10, ptr(r15 + VA_RESULTS))?;
    a.xor(r11d, r11d)?;
    a.set_label(&mut next)?;
    a.cmp(r11d, r9d)?;
    a.jae(reported)?;
    a.mov(eax, dword_ptr(r8 + r11 * 8))?;
    a.mov(ecx, dword_ptr(r8 + r11 * 8 + 4))?;
    a.cpuid()?;
    a.mov(dword_ptr(r10), eax)?;
    a.mov(dword_ptr(r10 + 4), ebx)?;
    a.mov(dword_ptr(r10 + 8), ecx)?;
    a.mov(dword_ptr(r10 + 12), edx)?;
    a.add(r10, RESULT_ENTRY_SIZE as i32)?;
    a.inc(r11d)?;
    a.jmp(next)?;
    a.set_label(&mut reported)?;
    a.mov(dword_ptr(r15 + VA_COUNT), r11d)?;
    ring(&mut a, DOORBELL_REPORT)?;
    ring(&mut a, DOORBELL_DONE)?;
    let mut halt = a.create_label();
    a.set_label(&mut halt)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(halt)?;

    // ---- Spin and barrier: switch to CPL3 right away.
    a.set_label(&mut spin)?;
    enter_user(&mut a, spin_user)?;
    a.set_label(&mut barrier)?;
    enter_user(&mut a, barrier_user)?;
    a.set_label(&mut exits)?;
    enter_user(&mut a, exits_user)?;

    // ---- Bad fetch, CPL0: jump to the target in PARAM0.
    a.set_label(&mut bad_fetch)?;
    a.mov(rax, qword_ptr(r14 + CTL_PARAM0))?;
    a.jmp(rax)?;

    // ---- Spin, CPL3: PARAM0 iterations (0 = forever), progress stored each time.
    a.set_label(&mut spin_user)?;
    let mut forever = a.create_label();
    let mut spin_loop = a.create_label();
    a.mov(r8, qword_ptr(r14 + CTL_PARAM0))?;
    a.xor(ecx, ecx)?;
    a.test(r8, r8)?;
    a.jz(forever)?;
    a.set_label(&mut spin_loop)?;
    a.inc(rcx)?;
    a.mov(qword_ptr(r15 + VA_PROGRESS), rcx)?;
    a.cmp(rcx, r8)?;
    a.jb(spin_loop)?;
    a.jmp(user_done)?;
    a.set_label(&mut forever)?;
    a.inc(rcx)?;
    a.mov(qword_ptr(r15 + VA_PROGRESS), rcx)?;
    a.jmp(forever)?;

    // ---- Barrier, CPL3: PARAM0 rounds of (PARAM1 work iterations, barrier).
    a.set_label(&mut barrier_user)?;
    let mut round = a.create_label();
    let mut work = a.create_label();
    let mut arrive = a.create_label();
    let mut wait = a.create_label();
    let mut passed = a.create_label();
    a.mov(r8, qword_ptr(r14 + CTL_PARAM0))?;
    a.mov(r9, qword_ptr(r14 + CTL_PARAM1))?;
    a.mov(r10d, dword_ptr(r14 + CTL_PARTICIPANTS))?;
    a.xor(r12d, r12d)?;
    a.set_label(&mut round)?;
    a.cmp(r12, r8)?;
    a.jae(user_done)?;
    a.mov(rcx, r9)?;
    a.set_label(&mut work)?;
    a.test(rcx, rcx)?;
    a.jz(arrive)?;
    a.dec(rcx)?;
    a.jmp(work)?;
    a.set_label(&mut arrive)?;
    // Read the generation before arriving; the last arriver resets the
    // counter and then bumps the generation, releasing the waiters.
    a.mov(eax, dword_ptr(r14 + CTL_BARRIER_GENERATION))?;
    a.mov(ecx, 1u32)?;
    a.lock().xadd(dword_ptr(r14 + CTL_BARRIER_COUNT), ecx)?;
    a.inc(ecx)?;
    a.cmp(ecx, r10d)?;
    a.jb(wait)?;
    a.mov(dword_ptr(r14 + CTL_BARRIER_COUNT), 0u32)?;
    a.lock().inc(dword_ptr(r14 + CTL_BARRIER_GENERATION))?;
    a.jmp(passed)?;
    a.set_label(&mut wait)?;
    a.pause()?;
    a.cmp(dword_ptr(r14 + CTL_BARRIER_GENERATION), eax)?;
    a.je(wait)?;
    a.set_label(&mut passed)?;
    a.inc(r12)?;
    a.mov(qword_ptr(r15 + VA_PROGRESS), r12)?;
    a.jmp(round)?;

    // ---- Exits, CPL3: PARAM0 pings, one port-I/O exit each; progress counts them.
    a.set_label(&mut exits_user)?;
    let mut ping = a.create_label();
    a.mov(r8, qword_ptr(r14 + CTL_PARAM0))?;
    a.xor(ecx, ecx)?;
    a.mov(edx, u32::from(DOORBELL_PORT))?;
    a.set_label(&mut ping)?;
    a.cmp(rcx, r8)?;
    a.jae(user_done)?;
    a.mov(eax, DOORBELL_PING)?;
    a.out(dx, eax)?;
    a.inc(rcx)?;
    a.mov(qword_ptr(r15 + VA_PROGRESS), rcx)?;
    a.jmp(ping)?;

    // ---- Done, CPL3 (IOPL 3 allows `out`), then park.
    a.set_label(&mut user_done)?;
    ring(&mut a, DOORBELL_DONE)?;
    let mut park = a.create_label();
    a.set_label(&mut park)?;
    a.pause()?;
    a.jmp(park)?;

    a.assemble(CODE_GPA)
}
