//! Completes in user space the x86 instructions a KVM backend failed to emulate.
//!
//! On a software or nested KVM backend the in-kernel instruction emulator stops at some
//! instructions a guest kernel uses (KVM_EXIT_INTERNAL_ERROR, suberror 1): INT3, CLAC/STAC,
//! POPCNT, XGETBV, LDMXCSR, SSE register moves. This crate is the pure core of completing
//! them: it decodes the bytes at RIP with iced-x86 and applies the instruction's exact
//! architectural effect to an abstract [`CpuState`] (registers, control-register bits,
//! x87/SSE state, XCR0, guest memory by linear address, the guest's CPUID [`Features`]),
//! with the CPU's privilege and feature rules: an instruction the guest's CPUID does not
//! offer raises #UD, CLAC/STAC at CPL > 0 raise #UD (Intel SDM), misaligned `movdqa`
//! raises #GP(0), and so on. The result is a [`Completion`]: retired, or an
//! [`Exception`] to inject. Anything outside the list is [`Unsupported`] and the VMM
//! stops the VM as before.
//!
//! The KVM side (KVM_GET/SET_REGS, SREGS, XSAVE, XCRS, page walks, KVM_SET_VCPU_EVENTS)
//! lives with the vCPU run loop in `vcpu-lifecycle`; this crate has no `unsafe`, no
//! ioctls and is tested against a fake CPU.
//!
//! Completed list ([`InsnClass`]): INT3, INT1, INTO; ENDBR32/64, NOP r/m, hint NOPs,
//! PREFETCHh, PAUSE; POPCNT, LZCNT, TZCNT, BSF, BSR (register and memory forms); CLAC,
//! STAC; FWAIT; LDMXCSR, STMXCSR; XGETBV; MOVD/MOVQ (XMM with GPR, memory or XMM),
//! MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD; PXOR/XORPS/XORPD, PAND/PANDN/POR/ANDPS/
//! ANDNPS/ORPS, PADD/PSUB (B/W/D/Q), PCMPEQ/PCMPGT (B/W/D), PSHUFB.
//!
//! [`syscall::check_page_fault`] covers a neighbouring gap of such backends: a 64-bit
//! SYSCALL from CPL3 left at CPL3, recognised from the #PF it causes at LSTAR.
//!
//! Not modelled (documented limits): segment limit checks, alignment-check #AC,
//! virtual-8086 mode and RFLAGS.TF single-step (both reported as [`Unsupported`]).
//!
//! ```
//! use insn_fallback::{complete, CpuMode, Exception, Features, Outcome, InsnClass};
//! # use insn_fallback::{AccessError, CpuState, Segment, SimdState, StateError};
//! # struct Cpu { gpr: [u64; 16], rip: u64, rflags: u64, f: Features }
//! # impl CpuState for Cpu {
//! #   fn mode(&self) -> CpuMode { CpuMode::Long64 }
//! #   fn cpl(&self) -> u8 { 0 }
//! #   fn cr0(&self) -> u64 { 0x8000_0031 }
//! #   fn cr4(&self) -> u64 { 0x20 }
//! #   fn features(&self) -> &Features { &self.f }
//! #   fn gpr(&self, i: usize) -> u64 { self.gpr[i] }
//! #   fn set_gpr(&mut self, i: usize, v: u64) { self.gpr[i] = v }
//! #   fn rip(&self) -> u64 { self.rip }
//! #   fn set_rip(&mut self, v: u64) { self.rip = v }
//! #   fn rflags(&self) -> u64 { self.rflags }
//! #   fn set_rflags(&mut self, v: u64) { self.rflags = v }
//! #   fn segment_base(&self, _: Segment) -> u64 { 0 }
//! #   fn simd(&mut self) -> Result<&SimdState, StateError> { Err(StateError::new("none")) }
//! #   fn simd_mut(&mut self) -> Result<&mut SimdState, StateError> { Err(StateError::new("none")) }
//! #   fn xcr0(&mut self) -> Result<u64, StateError> { Ok(1) }
//! #   fn xinuse(&mut self) -> Result<u64, StateError> { Ok(1) }
//! #   fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), AccessError> { Err(StateError::new("no memory").into()) }
//! #   fn write(&mut self, _: u64, _: &[u8]) -> Result<(), AccessError> { Err(StateError::new("no memory").into()) }
//! # }
//! // `popcnt rax, rcx` on a vCPU whose CPUID offers POPCNT.
//! let mut cpu = Cpu { gpr: [0; 16], rip: 0x1000, rflags: 0x2, f: Features::ALL };
//! cpu.gpr[1] = 0xf0f0;
//! let done = complete(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0xc1]).unwrap();
//! assert_eq!((done.class, done.outcome), (InsnClass::Popcnt, Outcome::Retired));
//! assert_eq!((cpu.gpr[0], cpu.rip), (8, 0x1005));
//!
//! // The same bytes on a guest whose CPUID lacks POPCNT: #UD, RIP unchanged.
//! cpu.f.popcnt = false;
//! let done = complete(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0xc1]).unwrap();
//! assert_eq!(done.outcome, Outcome::Exception(Exception::UD));
//! assert_eq!(cpu.rip, 0x1005, "a fault leaves RIP at the instruction");
//! ```

#![forbid(unsafe_code)]

mod class;
mod cpu;
mod exception;
mod exec;
mod features;
mod mnemonic_names;
mod operand;
pub mod paging;
mod sse;
pub mod syscall;

pub use class::InsnClass;
pub use cpu::{
    AccessError, AccessKind, CpuMode, CpuState, Segment, SimdState, StateError, AC, AF, CF, CR0_EM,
    CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_TS, CR0_WP, CR4_LA57, CR4_OSFXSR, CR4_OSXSAVE, CR4_SMAP,
    OF, PF, RF, SF, STATUS_FLAGS, TF, VM, ZF,
};
pub use exception::{Exception, Vector};
pub use exec::{complete, Completion, Outcome, Unsupported};
pub use features::Features;

/// The README example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
