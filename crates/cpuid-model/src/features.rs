//! The feature-bit catalogue: every named CPUID feature flag this crate knows,
//! with its location (leaf, subleaf, register, bit).
//!
//! Canonical names are the flag names of Linux `/proc/cpuinfo`
//! (`arch/x86/include/asm/cpufeatures.h`). Where Linux hides a flag or has no
//! name for it, the QEMU property name is used with `_` instead of `-`: so for
//! KVM's paravirtual features (leaf 0x4000_0001 EAX, QEMU's `kvm-pv-ipi`, ...), whose
//! Linux `KVM_FEATURE_*` macro names are accepted as aliases (`KVM_FEATURE_PV_SEND_IPI`,
//! or `pv_send_ipi`).
//! Lookups ([`by_name`]) also accept:
//! - QEMU's spelling of each flag (`sse4.2`, `lahf-lm`, `tsc-deadline`,
//!   `avx512vnni`, `ffxsr`, ...), and
//! - any spelling that differs only in case or in `-` / `.` / `_`.
//!
//! Facts come from the Intel SDM vol. 2A (CPUID), the AMD APM vol. 3 and the
//! Linux and QEMU flag tables.

use std::fmt;

use crate::table::{CpuidKey, CpuidTable, Reg};

mod names;

pub(crate) use names::edit_distance;
pub use names::{by_name, normalize_name, suggest};

/// Which vendor defines a feature bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureVendor {
    /// Defined by both Intel and AMD at the same location.
    Any,
    /// Defined by Intel only (AMD parts report 0 or something else).
    Intel,
    /// Defined by AMD only.
    Amd,
}

/// One named feature bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Feature {
    /// Canonical name (Linux `/proc/cpuinfo` spelling).
    pub name: &'static str,
    /// QEMU's property name for the same bit (for the few bits QEMU does not
    /// name, the canonical name with `-` for `_`).
    pub qemu_name: &'static str,
    /// Further accepted names (older QEMU or vendor spellings).
    pub aliases: &'static [&'static str],
    /// CPUID leaf (EAX input).
    pub leaf: u32,
    /// CPUID subleaf (ECX input); 0 for leaves without subleaves.
    pub subleaf: u32,
    /// Output register holding the bit.
    pub reg: Reg,
    /// Bit number, 0..=31.
    pub bit: u8,
    /// Further bits of the same register that QEMU sets and clears under the same
    /// name; 0 for all but `kvmclock`, which also owns bit 3 (`KVM_FEATURE_CLOCKSOURCE2`).
    pub extra_mask: u32,
    /// Vendor that defines the bit.
    pub vendor: FeatureVendor,
}

impl Feature {
    /// The table key of the leaf/subleaf holding this bit.
    pub const fn key(&self) -> CpuidKey {
        CpuidKey {
            leaf: self.leaf,
            subleaf: self.subleaf,
        }
    }

    /// The feature's bits as a mask of its register (one bit, or two for `kvmclock`).
    pub const fn mask(&self) -> u32 {
        1u32 << self.bit | self.extra_mask
    }

    /// True when `table` has the entry and all the feature's bits are set (QEMU's
    /// reading of a multi-bit property).
    pub fn is_set(&self, table: &CpuidTable) -> bool {
        table
            .regs(self.key())
            .is_some_and(|r| r.get(self.reg) & self.mask() == self.mask())
    }

    /// True for KVM's paravirtual features (leaf 0x4000_0001): they exist only while
    /// the hypervisor leaves do (`kvm=on`).
    pub const fn is_kvm_paravirt(&self) -> bool {
        self.leaf >= KVM_LEAVES.start && self.leaf < KVM_LEAVES.end
    }

    /// Set or clear the bit. Returns false (and changes nothing) when the table
    /// has no entry for the leaf/subleaf.
    pub fn set(&self, table: &mut CpuidTable, on: bool) -> bool {
        match table.get_mut(self.key()) {
            Some(entry) => {
                let r = entry.regs.get_mut(self.reg);
                if on {
                    *r |= self.mask();
                } else {
                    *r &= !self.mask();
                }
                true
            }
            None => false,
        }
    }

    /// Where the bit lives, in QEMU's warning notation: `CPUID.01H:ECX`,
    /// `CPUID.80000001H:EDX`, or `CPUID.07H.01H:EAX` for a non-zero subleaf.
    pub fn location(&self) -> String {
        let reg = self.reg.to_string().to_uppercase();
        if self.subleaf == 0 {
            format!("CPUID.{:02X}H:{reg}", self.leaf)
        } else {
            format!("CPUID.{:02X}H.{:02X}H:{reg}", self.leaf, self.subleaf)
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

const fn feat(
    name: &'static str,
    qemu_name: &'static str,
    leaf: u32,
    subleaf: u32,
    reg: Reg,
    bit: u8,
    vendor: FeatureVendor,
) -> Feature {
    Feature {
        name,
        qemu_name,
        aliases: &[],
        leaf,
        subleaf,
        reg,
        bit,
        extra_mask: 0,
        vendor,
    }
}

const fn with_aliases(mut f: Feature, aliases: &'static [&'static str]) -> Feature {
    f.aliases = aliases;
    f
}

/// A KVM paravirtual feature of leaf 0x4000_0001 EAX (QEMU's `FEAT_KVM` word): the
/// QEMU name with `_` as canonical name, Linux's `KVM_FEATURE_*` macro (without the
/// prefix, which [`by_name`] strips) as alias.
const fn kvm(
    name: &'static str,
    qemu: &'static str,
    bit: u8,
    linux: &'static [&'static str],
) -> Feature {
    with_aliases(feat(name, qemu, KVM_FEATURES, 0, Eax, bit, Any), linux)
}

use FeatureVendor::{Amd, Any, Intel};
use Reg::{Eax, Ebx, Ecx, Edx};

/// Leaf 1 EDX.
const L1D: u32 = 0x1;
const L7: u32 = 0x7;
const XSAVE: u32 = 0xd;
const E1: u32 = 0x8000_0001;
/// The SVM feature leaf.
const SVM: u32 = 0x8000_000a;
/// The hypervisor leaves KVM answers (signature 0x4000_0000, features 0x4000_0001).
pub(crate) const KVM_LEAVES: std::ops::Range<u32> = 0x4000_0000..0x5000_0000;
/// KVM's paravirtual feature leaf (`KVM_CPUID_FEATURES`).
const KVM_FEATURES: u32 = 0x4000_0001;

static CATALOGUE: &[Feature] = &[
    // CPUID.01H:EDX
    feat("fpu", "fpu", L1D, 0, Edx, 0, Any),
    feat("vme", "vme", L1D, 0, Edx, 1, Any),
    feat("de", "de", L1D, 0, Edx, 2, Any),
    feat("pse", "pse", L1D, 0, Edx, 3, Any),
    feat("tsc", "tsc", L1D, 0, Edx, 4, Any),
    feat("msr", "msr", L1D, 0, Edx, 5, Any),
    feat("pae", "pae", L1D, 0, Edx, 6, Any),
    feat("mce", "mce", L1D, 0, Edx, 7, Any),
    feat("cx8", "cx8", L1D, 0, Edx, 8, Any),
    feat("apic", "apic", L1D, 0, Edx, 9, Any),
    feat("sep", "sep", L1D, 0, Edx, 11, Any),
    feat("mtrr", "mtrr", L1D, 0, Edx, 12, Any),
    feat("pge", "pge", L1D, 0, Edx, 13, Any),
    feat("mca", "mca", L1D, 0, Edx, 14, Any),
    feat("cmov", "cmov", L1D, 0, Edx, 15, Any),
    feat("pat", "pat", L1D, 0, Edx, 16, Any),
    feat("pse36", "pse36", L1D, 0, Edx, 17, Any),
    feat("pn", "pn", L1D, 0, Edx, 18, Intel),
    feat("clflush", "clflush", L1D, 0, Edx, 19, Any),
    feat("dts", "ds", L1D, 0, Edx, 21, Intel),
    feat("acpi", "acpi", L1D, 0, Edx, 22, Intel),
    feat("mmx", "mmx", L1D, 0, Edx, 23, Any),
    feat("fxsr", "fxsr", L1D, 0, Edx, 24, Any),
    feat("sse", "sse", L1D, 0, Edx, 25, Any),
    feat("sse2", "sse2", L1D, 0, Edx, 26, Any),
    feat("ss", "ss", L1D, 0, Edx, 27, Intel),
    feat("ht", "ht", L1D, 0, Edx, 28, Any),
    feat("tm", "tm", L1D, 0, Edx, 29, Intel),
    feat("ia64", "ia64", L1D, 0, Edx, 30, Intel),
    feat("pbe", "pbe", L1D, 0, Edx, 31, Intel),
    // CPUID.01H:ECX
    with_aliases(feat("pni", "pni", L1D, 0, Ecx, 0, Any), &["sse3"]),
    with_aliases(
        feat("pclmulqdq", "pclmulqdq", L1D, 0, Ecx, 1, Any),
        &["pclmuldq"],
    ),
    feat("dtes64", "dtes64", L1D, 0, Ecx, 2, Intel),
    feat("monitor", "monitor", L1D, 0, Ecx, 3, Any),
    feat("ds_cpl", "ds-cpl", L1D, 0, Ecx, 4, Intel),
    feat("vmx", "vmx", L1D, 0, Ecx, 5, Intel),
    feat("smx", "smx", L1D, 0, Ecx, 6, Intel),
    feat("est", "est", L1D, 0, Ecx, 7, Intel),
    feat("tm2", "tm2", L1D, 0, Ecx, 8, Intel),
    feat("ssse3", "ssse3", L1D, 0, Ecx, 9, Any),
    feat("cid", "cid", L1D, 0, Ecx, 10, Intel),
    feat("sdbg", "sdbg", L1D, 0, Ecx, 11, Intel),
    feat("fma", "fma", L1D, 0, Ecx, 12, Any),
    feat("cx16", "cx16", L1D, 0, Ecx, 13, Any),
    feat("xtpr", "xtpr", L1D, 0, Ecx, 14, Intel),
    feat("pdcm", "pdcm", L1D, 0, Ecx, 15, Intel),
    feat("pcid", "pcid", L1D, 0, Ecx, 17, Any),
    feat("dca", "dca", L1D, 0, Ecx, 18, Intel),
    feat("sse4_1", "sse4.1", L1D, 0, Ecx, 19, Any),
    feat("sse4_2", "sse4.2", L1D, 0, Ecx, 20, Any),
    feat("x2apic", "x2apic", L1D, 0, Ecx, 21, Any),
    feat("movbe", "movbe", L1D, 0, Ecx, 22, Any),
    feat("popcnt", "popcnt", L1D, 0, Ecx, 23, Any),
    feat("tsc_deadline_timer", "tsc-deadline", L1D, 0, Ecx, 24, Any),
    feat("aes", "aes", L1D, 0, Ecx, 25, Any),
    feat("xsave", "xsave", L1D, 0, Ecx, 26, Any),
    feat("osxsave", "osxsave", L1D, 0, Ecx, 27, Any),
    feat("avx", "avx", L1D, 0, Ecx, 28, Any),
    feat("f16c", "f16c", L1D, 0, Ecx, 29, Any),
    feat("rdrand", "rdrand", L1D, 0, Ecx, 30, Any),
    feat("hypervisor", "hypervisor", L1D, 0, Ecx, 31, Any),
    // CPUID.06H:EAX
    feat("arat", "arat", 0x6, 0, Eax, 2, Any),
    // CPUID.(EAX=07H,ECX=0):EBX
    feat("fsgsbase", "fsgsbase", L7, 0, Ebx, 0, Any),
    feat("tsc_adjust", "tsc-adjust", L7, 0, Ebx, 1, Any),
    feat("sgx", "sgx", L7, 0, Ebx, 2, Intel),
    feat("bmi1", "bmi1", L7, 0, Ebx, 3, Any),
    feat("hle", "hle", L7, 0, Ebx, 4, Intel),
    feat("avx2", "avx2", L7, 0, Ebx, 5, Any),
    feat("fdp_excptn_only", "fdp-excptn-only", L7, 0, Ebx, 6, Intel),
    feat("smep", "smep", L7, 0, Ebx, 7, Any),
    feat("bmi2", "bmi2", L7, 0, Ebx, 8, Any),
    feat("erms", "erms", L7, 0, Ebx, 9, Any),
    feat("invpcid", "invpcid", L7, 0, Ebx, 10, Any),
    feat("rtm", "rtm", L7, 0, Ebx, 11, Intel),
    feat("cqm", "cqm", L7, 0, Ebx, 12, Any),
    feat("zero_fcs_fds", "zero-fcs-fds", L7, 0, Ebx, 13, Intel),
    feat("mpx", "mpx", L7, 0, Ebx, 14, Intel),
    feat("rdt_a", "rdt-a", L7, 0, Ebx, 15, Any),
    feat("avx512f", "avx512f", L7, 0, Ebx, 16, Any),
    feat("avx512dq", "avx512dq", L7, 0, Ebx, 17, Any),
    feat("rdseed", "rdseed", L7, 0, Ebx, 18, Any),
    feat("adx", "adx", L7, 0, Ebx, 19, Any),
    feat("smap", "smap", L7, 0, Ebx, 20, Any),
    feat("avx512ifma", "avx512ifma", L7, 0, Ebx, 21, Any),
    feat("pcommit", "pcommit", L7, 0, Ebx, 22, Intel),
    feat("clflushopt", "clflushopt", L7, 0, Ebx, 23, Any),
    feat("clwb", "clwb", L7, 0, Ebx, 24, Any),
    feat("intel_pt", "intel-pt", L7, 0, Ebx, 25, Intel),
    feat("avx512pf", "avx512pf", L7, 0, Ebx, 26, Intel),
    feat("avx512er", "avx512er", L7, 0, Ebx, 27, Intel),
    feat("avx512cd", "avx512cd", L7, 0, Ebx, 28, Any),
    feat("sha_ni", "sha-ni", L7, 0, Ebx, 29, Any),
    feat("avx512bw", "avx512bw", L7, 0, Ebx, 30, Any),
    feat("avx512vl", "avx512vl", L7, 0, Ebx, 31, Any),
    // CPUID.(EAX=07H,ECX=0):ECX
    feat("avx512vbmi", "avx512vbmi", L7, 0, Ecx, 1, Any),
    feat("umip", "umip", L7, 0, Ecx, 2, Any),
    feat("pku", "pku", L7, 0, Ecx, 3, Any),
    feat("ospke", "ospke", L7, 0, Ecx, 4, Any),
    feat("waitpkg", "waitpkg", L7, 0, Ecx, 5, Intel),
    feat("avx512_vbmi2", "avx512vbmi2", L7, 0, Ecx, 6, Any),
    feat("shstk", "cet-ss", L7, 0, Ecx, 7, Any),
    feat("gfni", "gfni", L7, 0, Ecx, 8, Any),
    feat("vaes", "vaes", L7, 0, Ecx, 9, Any),
    feat("vpclmulqdq", "vpclmulqdq", L7, 0, Ecx, 10, Any),
    feat("avx512_vnni", "avx512vnni", L7, 0, Ecx, 11, Any),
    feat("avx512_bitalg", "avx512bitalg", L7, 0, Ecx, 12, Any),
    feat("tme", "tme", L7, 0, Ecx, 13, Intel),
    feat("avx512_vpopcntdq", "avx512-vpopcntdq", L7, 0, Ecx, 14, Any),
    feat("la57", "la57", L7, 0, Ecx, 16, Any),
    feat("rdpid", "rdpid", L7, 0, Ecx, 22, Any),
    feat("bus_lock_detect", "bus-lock-detect", L7, 0, Ecx, 24, Any),
    feat("cldemote", "cldemote", L7, 0, Ecx, 25, Intel),
    feat("movdiri", "movdiri", L7, 0, Ecx, 27, Intel),
    feat("movdir64b", "movdir64b", L7, 0, Ecx, 28, Intel),
    feat("enqcmd", "enqcmd", L7, 0, Ecx, 29, Intel),
    feat("sgx_lc", "sgxlc", L7, 0, Ecx, 30, Intel),
    feat("pks", "pks", L7, 0, Ecx, 31, Intel),
    // CPUID.(EAX=07H,ECX=0):EDX
    feat("avx512_4vnniw", "avx512-4vnniw", L7, 0, Edx, 2, Intel),
    feat("avx512_4fmaps", "avx512-4fmaps", L7, 0, Edx, 3, Intel),
    feat("fsrm", "fsrm", L7, 0, Edx, 4, Any),
    feat(
        "avx512_vp2intersect",
        "avx512-vp2intersect",
        L7,
        0,
        Edx,
        8,
        Any,
    ),
    feat("md_clear", "md-clear", L7, 0, Edx, 10, Intel),
    feat("serialize", "serialize", L7, 0, Edx, 14, Intel),
    with_aliases(
        feat("tsxldtrk", "tsx-ldtrk", L7, 0, Edx, 16, Intel),
        &["tsx_ldtrk"],
    ),
    feat("pconfig", "pconfig", L7, 0, Edx, 18, Intel),
    feat("arch_lbr", "arch-lbr", L7, 0, Edx, 19, Intel),
    feat("ibt", "cet-ibt", L7, 0, Edx, 20, Intel),
    feat("amx_bf16", "amx-bf16", L7, 0, Edx, 22, Intel),
    feat("avx512_fp16", "avx512-fp16", L7, 0, Edx, 23, Intel),
    feat("amx_tile", "amx-tile", L7, 0, Edx, 24, Intel),
    feat("amx_int8", "amx-int8", L7, 0, Edx, 25, Intel),
    feat("spec_ctrl", "spec-ctrl", L7, 0, Edx, 26, Intel),
    feat("stibp", "stibp", L7, 0, Edx, 27, Intel),
    feat("flush_l1d", "flush-l1d", L7, 0, Edx, 28, Intel),
    feat(
        "arch_capabilities",
        "arch-capabilities",
        L7,
        0,
        Edx,
        29,
        Intel,
    ),
    feat("core_capability", "core-capability", L7, 0, Edx, 30, Intel),
    feat("ssbd", "ssbd", L7, 0, Edx, 31, Intel),
    // CPUID.(EAX=07H,ECX=1):EAX
    feat("avx_vnni", "avx-vnni", L7, 1, Eax, 4, Any),
    feat("avx512_bf16", "avx512-bf16", L7, 1, Eax, 5, Any),
    feat("cmpccxadd", "cmpccxadd", L7, 1, Eax, 7, Intel),
    feat("fzrm", "fzrm", L7, 1, Eax, 10, Intel),
    feat("fsrs", "fsrs", L7, 1, Eax, 11, Intel),
    feat("fsrc", "fsrc", L7, 1, Eax, 12, Intel),
    feat("amx_fp16", "amx-fp16", L7, 1, Eax, 21, Intel),
    feat("avx_ifma", "avx-ifma", L7, 1, Eax, 23, Intel),
    feat("lam", "lam", L7, 1, Eax, 26, Intel),
    // CPUID.(EAX=0DH,ECX=1):EAX
    feat("xsaveopt", "xsaveopt", XSAVE, 1, Eax, 0, Any),
    feat("xsavec", "xsavec", XSAVE, 1, Eax, 1, Any),
    feat("xgetbv1", "xgetbv1", XSAVE, 1, Eax, 2, Any),
    feat("xsaves", "xsaves", XSAVE, 1, Eax, 3, Any),
    feat("xfd", "xfd", XSAVE, 1, Eax, 4, Intel),
    // CPUID.80000001H:ECX
    feat("lahf_lm", "lahf-lm", E1, 0, Ecx, 0, Any),
    feat("cmp_legacy", "cmp-legacy", E1, 0, Ecx, 1, Amd),
    feat("svm", "svm", E1, 0, Ecx, 2, Amd),
    feat("extapic", "extapic", E1, 0, Ecx, 3, Amd),
    with_aliases(
        feat("cr8_legacy", "cr8legacy", E1, 0, Ecx, 4, Amd),
        &["cr8leg"],
    ),
    with_aliases(feat("abm", "abm", E1, 0, Ecx, 5, Any), &["lzcnt"]),
    feat("sse4a", "sse4a", E1, 0, Ecx, 6, Amd),
    feat("misalignsse", "misalignsse", E1, 0, Ecx, 7, Amd),
    with_aliases(
        feat("3dnowprefetch", "3dnowprefetch", E1, 0, Ecx, 8, Any),
        &["prefetchw"],
    ),
    feat("osvw", "osvw", E1, 0, Ecx, 9, Amd),
    feat("ibs", "ibs", E1, 0, Ecx, 10, Amd),
    feat("xop", "xop", E1, 0, Ecx, 11, Amd),
    feat("skinit", "skinit", E1, 0, Ecx, 12, Amd),
    feat("wdt", "wdt", E1, 0, Ecx, 13, Amd),
    feat("lwp", "lwp", E1, 0, Ecx, 15, Amd),
    feat("fma4", "fma4", E1, 0, Ecx, 16, Amd),
    feat("tce", "tce", E1, 0, Ecx, 17, Amd),
    feat("nodeid_msr", "nodeid-msr", E1, 0, Ecx, 19, Amd),
    feat("tbm", "tbm", E1, 0, Ecx, 21, Amd),
    feat("topoext", "topoext", E1, 0, Ecx, 22, Amd),
    with_aliases(
        feat("perfctr_core", "perfctr-core", E1, 0, Ecx, 23, Amd),
        &["perfcore"],
    ),
    feat("perfctr_nb", "perfctr-nb", E1, 0, Ecx, 24, Amd),
    feat("bpext", "bpext", E1, 0, Ecx, 26, Amd),
    feat("ptsc", "ptsc", E1, 0, Ecx, 27, Amd),
    feat("perfctr_llc", "perfctr-llc", E1, 0, Ecx, 28, Amd),
    feat("mwaitx", "mwaitx", E1, 0, Ecx, 29, Amd),
    // CPUID.80000001H:EDX (bits that do not repeat leaf 1 EDX)
    feat("syscall", "syscall", E1, 0, Edx, 11, Any),
    feat("mp", "mp", E1, 0, Edx, 19, Amd),
    with_aliases(feat("nx", "nx", E1, 0, Edx, 20, Any), &["xd"]),
    feat("mmxext", "mmxext", E1, 0, Edx, 22, Amd),
    with_aliases(
        feat("fxsr_opt", "fxsr-opt", E1, 0, Edx, 25, Amd),
        &["ffxsr"],
    ),
    with_aliases(
        feat("pdpe1gb", "pdpe1gb", E1, 0, Edx, 26, Any),
        &["page1gb"],
    ),
    feat("rdtscp", "rdtscp", E1, 0, Edx, 27, Any),
    with_aliases(feat("lm", "lm", E1, 0, Edx, 29, Any), &["i64"]),
    feat("3dnowext", "3dnowext", E1, 0, Edx, 30, Amd),
    feat("3dnow", "3dnow", E1, 0, Edx, 31, Amd),
    // CPUID.80000007H:EDX
    feat("invtsc", "invtsc", 0x8000_0007, 0, Edx, 8, Any),
    // CPUID.80000008H:EBX
    feat("clzero", "clzero", 0x8000_0008, 0, Ebx, 0, Amd),
    feat("irperf", "irperf", 0x8000_0008, 0, Ebx, 1, Amd),
    feat("xsaveerptr", "xsaveerptr", 0x8000_0008, 0, Ebx, 2, Amd),
    feat("rdpru", "rdpru", 0x8000_0008, 0, Ebx, 4, Amd),
    feat("wbnoinvd", "wbnoinvd", 0x8000_0008, 0, Ebx, 9, Any),
    feat("amd_ibpb", "ibpb", 0x8000_0008, 0, Ebx, 12, Amd),
    feat("amd_ibrs", "ibrs", 0x8000_0008, 0, Ebx, 14, Amd),
    feat("amd_stibp", "amd-stibp", 0x8000_0008, 0, Ebx, 15, Amd),
    feat(
        "amd_stibp_always_on",
        "stibp-always-on",
        0x8000_0008,
        0,
        Ebx,
        17,
        Amd,
    ),
    feat("amd_psfd", "amd-psfd", 0x8000_0008, 0, Ebx, 23, Amd),
    feat("amd_ssbd", "amd-ssbd", 0x8000_0008, 0, Ebx, 24, Amd),
    feat("virt_ssbd", "virt-ssbd", 0x8000_0008, 0, Ebx, 25, Amd),
    with_aliases(
        feat("amd_ssb_no", "amd-no-ssb", 0x8000_0008, 0, Ebx, 26, Amd),
        &["amd_no_ssb"],
    ),
    // CPUID.8000000AH:EDX (SVM features; QEMU spellings where Linux has none)
    feat("npt", "npt", SVM, 0, Edx, 0, Amd),
    feat("lbrv", "lbrv", SVM, 0, Edx, 1, Amd),
    feat("svm_lock", "svm-lock", SVM, 0, Edx, 2, Amd),
    feat("nrip_save", "nrip-save", SVM, 0, Edx, 3, Amd),
    feat("tsc_scale", "tsc-scale", SVM, 0, Edx, 4, Amd),
    feat("vmcb_clean", "vmcb-clean", SVM, 0, Edx, 5, Amd),
    feat("flushbyasid", "flushbyasid", SVM, 0, Edx, 6, Amd),
    feat("decodeassists", "decodeassists", SVM, 0, Edx, 7, Amd),
    feat("pausefilter", "pause-filter", SVM, 0, Edx, 10, Amd),
    feat("pfthreshold", "pfthreshold", SVM, 0, Edx, 12, Amd),
    feat("avic", "avic", SVM, 0, Edx, 13, Amd),
    feat("v_vmsave_vmload", "v-vmsave-vmload", SVM, 0, Edx, 15, Amd),
    feat("vgif", "vgif", SVM, 0, Edx, 16, Amd),
    feat("svme_addr_chk", "svme-addr-chk", SVM, 0, Edx, 28, Amd),
    // CPUID.80000021H:EAX
    feat(
        "no_nested_data_bp",
        "no-nested-data-bp",
        0x8000_0021,
        0,
        Eax,
        0,
        Amd,
    ),
    with_aliases(
        feat(
            "lfence_rdtsc",
            "lfence-always-serializing",
            0x8000_0021,
            0,
            Eax,
            2,
            Amd,
        ),
        &["lfence_always_serializing"],
    ),
    feat(
        "null_sel_clr_base",
        "null-sel-clr-base",
        0x8000_0021,
        0,
        Eax,
        6,
        Amd,
    ),
    feat("auto_ibrs", "auto-ibrs", 0x8000_0021, 0, Eax, 8, Amd),
    // CPUID.40000001H:EAX (KVM_CPUID_FEATURES): QEMU 7.2's names; aliases are Linux's
    // KVM_FEATURE_* macros, which `by_name` also takes with the prefix.
    kvmclock_feature(),
    kvm("kvm_nopiodelay", "kvm-nopiodelay", 1, &["nop_io_delay"]),
    kvm("kvm_mmu", "kvm-mmu", 2, &["mmu_op"]),
    kvm("kvm_asyncpf", "kvm-asyncpf", 4, &["async_pf"]),
    kvm("kvm_steal_time", "kvm-steal-time", 5, &["steal_time"]),
    kvm("kvm_pv_eoi", "kvm-pv-eoi", 6, &["pv_eoi"]),
    kvm("kvm_pv_unhalt", "kvm-pv-unhalt", 7, &["pv_unhalt"]),
    kvm("kvm_pv_tlb_flush", "kvm-pv-tlb-flush", 9, &["pv_tlb_flush"]),
    // QEMU 8.2's name; QEMU 7.2 leaves bit 10 unnamed (props::QEMU_7_2_UNNAMED).
    kvm(
        "kvm_asyncpf_vmexit",
        "kvm-asyncpf-vmexit",
        10,
        &["async_pf_vmexit"],
    ),
    kvm("kvm_pv_ipi", "kvm-pv-ipi", 11, &["pv_send_ipi"]),
    kvm(
        "kvm_poll_control",
        "kvm-poll-control",
        12,
        &["poll_control"],
    ),
    kvm(
        "kvm_pv_sched_yield",
        "kvm-pv-sched-yield",
        13,
        &["pv_sched_yield"],
    ),
    kvm("kvm_asyncpf_int", "kvm-asyncpf-int", 14, &["async_pf_int"]),
    kvm(
        "kvm_msi_ext_dest_id",
        "kvm-msi-ext-dest-id",
        15,
        &["msi_ext_dest_id"],
    ),
    kvm(
        "kvmclock_stable_bit",
        "kvmclock-stable-bit",
        24,
        &["clocksource_stable_bit"],
    ),
];

/// `kvmclock`: bit 0 (`KVM_FEATURE_CLOCKSOURCE`) and bit 3 (`KVM_FEATURE_CLOCKSOURCE2`),
/// one property in QEMU, which gives both bits the name.
const fn kvmclock_feature() -> Feature {
    let mut f = kvm("kvmclock", "kvmclock", 0, &["clocksource", "clocksource2"]);
    f.extra_mask = 1 << 3;
    f
}

/// Bits a raw host dump may show but `KVM_GET_SUPPORTED_CPUID` never reports,
/// because KVM does not virtualize them (thermal and power management, debug
/// store, SMX, cache QoS monitoring, AMD IBS/LWP/node counters, ...), after
/// Linux `arch/x86/kvm/cpuid.c`.
const HOST_ONLY: &[&str] = &[
    "pn",
    "dts",
    "acpi",
    "tm",
    "ia64",
    "pbe",
    "dtes64",
    "ds_cpl",
    "smx",
    "est",
    "tm2",
    "cid",
    "sdbg",
    "xtpr",
    "dca",
    "cqm",
    "rdt_a",
    "pcommit",
    "tme",
    "pconfig",
    "extapic",
    "ibs",
    "skinit",
    "wdt",
    "lwp",
    "tce",
    "nodeid_msr",
    "perfctr_nb",
    "bpext",
    "ptsc",
    "perfctr_llc",
    "mwaitx",
    "mp",
    "irperf",
];

impl Feature {
    /// True for bits KVM never offers to guests (see `HOST_ONLY` in the
    /// source). They can appear in a raw `cpuid -r` dump of a host, but not in
    /// the host's supported table.
    pub fn is_host_only(&self) -> bool {
        HOST_ONLY.contains(&self.name)
    }
}

/// Every catalogued feature, grouped by leaf/subleaf/register, then bit.
pub fn all() -> &'static [Feature] {
    CATALOGUE
}

/// The catalogued features whose bit is set in `table`, in catalogue order.
pub fn present_in(table: &CpuidTable) -> Vec<&'static Feature> {
    CATALOGUE.iter().filter(|f| f.is_set(table)).collect()
}

/// Catalogued features at one leaf/subleaf/register, in bit order.
pub fn in_register(key: CpuidKey, reg: Reg) -> impl Iterator<Item = &'static Feature> {
    CATALOGUE
        .iter()
        .filter(move |f| f.key() == key && f.reg == reg)
}

/// Mask of all catalogued bits at one leaf/subleaf/register.
pub fn register_mask(key: CpuidKey, reg: Reg) -> u32 {
    in_register(key, reg).fold(0, |m, f| m | f.mask())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_features_share_a_bit_or_a_name() {
        let mut bits = HashSet::new();
        let mut names = HashSet::new();
        for f in all() {
            assert!(f.bit < 32, "{}", f.name);
            for bit in (0..32).filter(|b| f.mask() & 1 << b != 0) {
                assert!(
                    bits.insert((f.leaf, f.subleaf, f.reg, bit)),
                    "bit {bit} of {} catalogued twice",
                    f.name
                );
            }
            assert!(names.insert(normalize_name(f.name)), "{}", f.name);
        }
        // No alias or QEMU spelling resolves to a different feature than the
        // one that declares it.
        for f in all() {
            for a in std::iter::once(&f.qemu_name).chain(f.aliases.iter()) {
                assert_eq!(by_name(a).map(|g| g.name), Some(f.name), "alias {a}");
            }
        }
    }

    #[test]
    fn qemu_and_linux_spellings_resolve_to_the_same_bit() {
        for (spelling, canonical) in [
            ("sse4.2", "sse4_2"),
            ("sse4-2", "sse4_2"),
            ("SSE4_2", "sse4_2"),
            ("sse3", "pni"),
            ("lahf-lm", "lahf_lm"),
            ("fxsr-opt", "fxsr_opt"),
            ("ffxsr", "fxsr_opt"),
            ("tsc-deadline", "tsc_deadline_timer"),
            ("avx512vnni", "avx512_vnni"),
            ("avx512-vpopcntdq", "avx512_vpopcntdq"),
            ("ds", "dts"),
            ("i64", "lm"),
            ("ibpb", "amd_ibpb"),
            ("cr8legacy", "cr8_legacy"),
            ("SSE4.2", "sse4_2"),
            ("Sse4-2", "sse4_2"),
        ] {
            assert_eq!(
                by_name(spelling).map(|f| f.name),
                Some(canonical),
                "{spelling}"
            );
        }
        assert!(by_name("avx3").is_none());
        for odd in ["", "é", "kvm_feature_", "kvm_featuré_x", "kvm_feature_é"] {
            assert!(by_name(odd).is_none(), "{odd}");
        }
    }

    #[test]
    fn every_spelling_fits_the_index_and_finds_its_feature() {
        assert!(CATALOGUE.len() <= usize::from(u16::MAX));
        for f in CATALOGUE {
            assert!(f.aliases.len() + 2 <= usize::from(u8::MAX), "{}", f.name);
            // A canonical name is never shadowed; another spelling may be taken by an
            // earlier feature's canonical name, never by nothing.
            assert!(std::ptr::eq(by_name(f.name).unwrap(), f), "{}", f.name);
            for alias in std::iter::once(&f.qemu_name).chain(f.aliases) {
                assert!(by_name(alias).is_some(), "{alias}");
            }
        }
    }

    #[test]
    fn kvm_paravirt_features_take_qemus_and_linuxs_names() {
        for (spelling, canonical, mask) in [
            ("kvm-pv-ipi", "kvm_pv_ipi", 1 << 11),
            ("KVM_FEATURE_PV_SEND_IPI", "kvm_pv_ipi", 1 << 11),
            ("kvm_pv_unhalt", "kvm_pv_unhalt", 1 << 7),
            ("kvm-pv-sched-yield", "kvm_pv_sched_yield", 1 << 13),
            ("kvmclock-stable-bit", "kvmclock_stable_bit", 1 << 24),
            ("kvmclock", "kvmclock", 0b1001),
            ("kvm_feature_clocksource2", "kvmclock", 0b1001),
            ("pv-send-ipi", "kvm_pv_ipi", 1 << 11),
        ] {
            let f = by_name(spelling).unwrap_or_else(|| panic!("{spelling}"));
            assert_eq!((f.name, f.mask()), (canonical, mask), "{spelling}");
            assert!(f.is_kvm_paravirt());
            assert_eq!(f.location(), "CPUID.40000001H:EAX");
        }
        assert!(!by_name("x2apic").unwrap().is_kvm_paravirt());
        assert!(by_name("kvm_feature_avx").is_none());
        assert_eq!(suggest("kvm-pv-ip"), Some("kvm_pv_ipi"));
    }

    #[test]
    fn a_two_bit_feature_is_set_only_with_both_bits() {
        let clock = by_name("kvmclock").unwrap();
        let mut t = CpuidTable::new();
        t.insert(clock.key(), Default::default());
        clock.set(&mut t, true);
        assert_eq!(t.regs(clock.key()).unwrap().eax, 0b1001);
        t.get_mut(clock.key()).unwrap().regs.eax = 0b0001;
        assert!(!clock.is_set(&t));
        t.get_mut(clock.key()).unwrap().regs.eax = 0b1111;
        clock.set(&mut t, false);
        assert_eq!(t.regs(clock.key()).unwrap().eax, 0b0110);
    }

    #[test]
    fn host_only_names_are_catalogued() {
        for n in HOST_ONLY {
            assert_eq!(by_name(n).map(|f| f.name), Some(*n));
        }
        assert!(by_name("est").unwrap().is_host_only());
        assert!(!by_name("avx2").unwrap().is_host_only());
    }

    #[test]
    fn locations_use_qemu_notation() {
        assert_eq!(by_name("avx").unwrap().location(), "CPUID.01H:ECX");
        assert_eq!(by_name("svm").unwrap().location(), "CPUID.80000001H:ECX");
        assert_eq!(by_name("avx_vnni").unwrap().location(), "CPUID.07H.01H:EAX");
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("avx3"), Some("avx"));
        assert_eq!(suggest("avx512vnn"), Some("avx512_vnni"));
        assert_eq!(suggest("x2apci"), Some("x2apic"));
        assert_eq!(suggest("completely-unrelated"), None);
    }
}
