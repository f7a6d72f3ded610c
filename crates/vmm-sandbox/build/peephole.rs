//! Jump threading and dead-code removal for the classic BPF that seccompiler writes.
//!
//! seccompiler reaches every outcome through jumps to jumps: a syscall without argument
//! rules takes five instructions (`jeq nr; ja; ja; ret allow; ret <mismatch>`), of which
//! the kernel needs one or two. Installing a filter costs time in proportion to its
//! length (the kernel translates it to eBPF and JIT-compiles it, about 0.2 to 0.3 us per
//! instruction on this project's hosts), so build.rs passes each program through here:
//! every jump goes straight to where its chain of unconditional jumps ends, a jump that
//! ends at a return becomes that return, a load of the word the accumulator already holds
//! goes, and what nothing reaches any more is dropped. The verdict for every input stays
//! the same (the crate's tests run both forms through an interpreter).

use seccompiler::sock_filter;

/// The classic BPF opcodes this pass and build.rs's dispatch write.
pub const LD_W_ABS: u16 = 0x20;
pub const RET_K: u16 = 0x06;
pub const JMP_JA: u16 = 0x05;
pub const JMP_JEQ_K: u16 = 0x15;
pub const JMP_JGE_K: u16 = 0x35;
/// `BPF_JMP` class: conditional jumps have it with a non-`JA` operation.
const CLASS_MASK: u16 = 0x07;
const CLASS_JMP: u16 = 0x05;
/// A conditional jump reaches at most this far (its offsets are 8-bit).
const MAX_COND: usize = 255;

/// One instruction with its jump targets as indexes into the program.
#[derive(Clone, Copy, PartialEq)]
enum Insn {
    /// Anything that goes on to the next instruction (loads, ALU): its code and operand.
    Step(u16, u32),
    Ret(u32),
    Ja(usize),
    Cond {
        code: u16,
        k: u32,
        jt: usize,
        jf: usize,
    },
}

/// The shortest program this pass finds with the same verdicts as `program`.
pub fn optimize(program: &[sock_filter]) -> Vec<sock_filter> {
    let mut insns = decode(program);
    loop {
        let before = insns.len();
        thread_jumps(&mut insns);
        drop_reloads(&mut insns);
        insns = drop_unreachable(&insns);
        if insns.len() == before {
            return encode(&insns);
        }
    }
}

fn decode(program: &[sock_filter]) -> Vec<Insn> {
    program
        .iter()
        .enumerate()
        .map(|(i, f)| match f.code {
            RET_K => Insn::Ret(f.k),
            JMP_JA => Insn::Ja(i + 1 + f.k as usize),
            code if code & CLASS_MASK == CLASS_JMP => Insn::Cond {
                code,
                k: f.k,
                jt: i + 1 + usize::from(f.jt),
                jf: i + 1 + usize::from(f.jf),
            },
            _ => Insn::Step(f.code, f.k),
        })
        .collect()
}

/// Where a jump from `from` to `to` may go instead: along unconditional jumps, and from a
/// return to the farthest identical return, as far as the jump can reach (`limit`
/// instructions after `from`). Sharing returns leaves the others unreachable.
fn follow(insns: &[Insn], from: usize, mut to: usize, limit: usize) -> usize {
    while let Insn::Ja(next) = insns[to] {
        if next - from - 1 > limit {
            break;
        }
        to = next;
    }
    if let Insn::Ret(k) = insns[to] {
        let reach = insns
            .len()
            .min(from.saturating_add(limit).saturating_add(2));
        if let Some(last) = (to..reach).rev().find(|&j| insns[j] == Insn::Ret(k)) {
            to = last;
        }
    }
    to
}

fn thread_jumps(insns: &mut [Insn]) {
    for i in 0..insns.len() {
        insns[i] = match insns[i] {
            Insn::Ja(to) => {
                let to = follow(insns, i, to, usize::MAX);
                match insns[to] {
                    Insn::Ret(k) => Insn::Ret(k),
                    _ => Insn::Ja(to),
                }
            }
            Insn::Cond { code, k, jt, jf } => {
                let (jt, jf) = (
                    follow(insns, i, jt, MAX_COND),
                    follow(insns, i, jf, MAX_COND),
                );
                if jt == jf {
                    Insn::Ja(jt)
                } else {
                    Insn::Cond { code, k, jt, jf }
                }
            }
            other => other,
        };
    }
}

/// Turns a load of the word the accumulator holds already, on every path that reaches it,
/// into a jump to the next instruction (dropped next). seccompiler reloads the argument
/// before each of its comparisons: the vCPU filter's 21 ioctl rules load `args[1]` 21
/// times. Jumps only go forward, so one pass in order sees every predecessor first.
fn drop_reloads(insns: &mut [Insn]) {
    // What the accumulator holds on entry to each instruction: `Some(Some(k))` the word
    // at offset k on every path so far, `Some(None)` unknown, `None` no path yet.
    let mut holds: Vec<Option<Option<u32>>> = vec![None; insns.len() + 1];
    holds[0] = Some(None);
    let meet = |slot: &mut Option<Option<u32>>, value: Option<u32>| {
        *slot = Some(match *slot {
            None => value,
            Some(held) => held.filter(|_| held == value),
        });
    };
    for i in 0..insns.len() {
        let Some(held) = holds[i] else { continue };
        match insns[i] {
            Insn::Step(LD_W_ABS, k) if held == Some(k) => {
                insns[i] = Insn::Ja(i + 1);
                meet(&mut holds[i + 1], held);
            }
            Insn::Step(LD_W_ABS, k) => meet(&mut holds[i + 1], Some(k)),
            Insn::Step(..) => meet(&mut holds[i + 1], None),
            Insn::Ret(_) => {}
            Insn::Ja(to) => meet(&mut holds[to], held),
            Insn::Cond { jt, jf, .. } => {
                meet(&mut holds[jt], held);
                meet(&mut holds[jf], held);
            }
        }
    }
}

/// The instructions reachable from the first, in order, with their targets renumbered;
/// an unconditional jump to the very next one kept is dropped too.
fn drop_unreachable(insns: &[Insn]) -> Vec<Insn> {
    let mut reached = vec![false; insns.len()];
    let mut todo = vec![0];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut reached[i], true) {
            continue;
        }
        match insns[i] {
            Insn::Step(..) => todo.push(i + 1),
            Insn::Ret(_) => {}
            Insn::Ja(to) => todo.push(to),
            Insn::Cond { jt, jf, .. } => todo.extend([jt, jf]),
        }
    }
    let mut kept = Vec::new();
    let mut next = insns.len();
    for i in (0..insns.len()).rev() {
        let fallthrough_ja = matches!(insns[i], Insn::Ja(to) if to == next);
        if reached[i] && !fallthrough_ja {
            kept.push(i);
            next = i;
        }
    }
    kept.reverse();
    // A kept instruction's new index is its place in `kept`; a dropped one (only a jump
    // to the next kept instruction is ever a target) continues at the next kept one.
    let renumber = |old: usize| kept.binary_search(&old).unwrap_or_else(|at| at);
    kept.iter()
        .map(|&i| match insns[i] {
            Insn::Ja(to) => Insn::Ja(renumber(to)),
            Insn::Cond { code, k, jt, jf } => Insn::Cond {
                code,
                k,
                jt: renumber(jt),
                jf: renumber(jf),
            },
            other => other,
        })
        .collect()
}

fn encode(insns: &[Insn]) -> Vec<sock_filter> {
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    insns
        .iter()
        .enumerate()
        .map(|(i, op)| match *op {
            Insn::Step(code, k) => insn(code, 0, 0, k),
            Insn::Ret(k) => insn(RET_K, 0, 0, k),
            Insn::Ja(to) => insn(JMP_JA, 0, 0, (to - i - 1) as u32),
            Insn::Cond { code, k, jt, jf } => {
                let offset = |to: usize| u8::try_from(to - i - 1).expect("a BPF jump in reach");
                insn(code, offset(jt), offset(jf), k)
            }
        })
        .collect()
}
