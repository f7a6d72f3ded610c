//! A fake CPU for the semantics tests: registers in fields, memory as mapped 4 KiB pages.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};

use insn_fallback::paging::PfCode;
use insn_fallback::{
    AccessError, AccessKind, CpuMode, CpuState, Exception, Features, Segment, SimdState,
    StateError, CR0_PE, CR0_PG, CR4_OSFXSR, CR4_OSXSAVE,
};

pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RDI: usize = 7;

pub struct FakeCpu {
    pub mode: CpuMode,
    pub cpl: u8,
    pub cr0: u64,
    pub cr4: u64,
    pub features: Features,
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds_base: u64,
    pub simd: SimdState,
    pub xcr0: u64,
    pub xinuse: u64,
    pub pages: BTreeSet<u64>,
    pub mem: HashMap<u64, u8>,
    /// How many times the SIMD state was borrowed for writing.
    pub simd_writes: u32,
}

impl FakeCpu {
    /// 64-bit mode, CPL0, SSE and XSAVE enabled in CR4, every feature, RIP 0x1000.
    pub fn long64() -> Self {
        FakeCpu {
            mode: CpuMode::Long64,
            cpl: 0,
            cr0: CR0_PE | CR0_PG | (1 << 1) | (1 << 5),
            cr4: CR4_OSFXSR | CR4_OSXSAVE | (1 << 5),
            features: Features::ALL,
            gpr: [0; 16],
            rip: 0x1000,
            rflags: 0x2,
            fs_base: 0,
            gs_base: 0,
            ds_base: 0,
            simd: SimdState::default(),
            xcr0: 0x7,
            xinuse: 0x3,
            pages: BTreeSet::new(),
            mem: HashMap::new(),
            simd_writes: 0,
        }
    }

    pub fn map(&mut self, addr: u64) {
        self.pages.insert(addr & !0xfff);
    }

    pub fn poke(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.map(addr + i as u64);
            self.mem.insert(addr + i as u64, *b);
        }
    }

    pub fn peek(&self, addr: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| *self.mem.get(&(addr + i)).unwrap_or(&0))
            .collect()
    }

    fn check(&self, addr: u64, len: usize, kind: AccessKind) -> Result<(), AccessError> {
        for i in 0..len as u64 {
            let a = addr.wrapping_add(i);
            if !self.pages.contains(&(a & !0xfff)) {
                let code = PfCode::not_present(kind, self.cpl);
                return Err(AccessError::Fault(Exception::page_fault(a, code)));
            }
        }
        Ok(())
    }
}

impl CpuState for FakeCpu {
    fn mode(&self) -> CpuMode {
        self.mode
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn cr0(&self) -> u64 {
        self.cr0
    }
    fn cr4(&self) -> u64 {
        self.cr4
    }
    fn features(&self) -> &Features {
        &self.features
    }
    fn gpr(&self, index: usize) -> u64 {
        self.gpr[index]
    }
    fn set_gpr(&mut self, index: usize, value: u64) {
        self.gpr[index] = value;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, value: u64) {
        self.rip = value;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
    fn segment_base(&self, segment: Segment) -> u64 {
        match segment {
            Segment::Fs => self.fs_base,
            Segment::Gs => self.gs_base,
            Segment::Ds => self.ds_base,
            _ => 0,
        }
    }
    fn simd(&mut self) -> Result<&SimdState, StateError> {
        Ok(&self.simd)
    }
    fn simd_mut(&mut self) -> Result<&mut SimdState, StateError> {
        self.simd_writes += 1;
        Ok(&mut self.simd)
    }
    fn xcr0(&mut self) -> Result<u64, StateError> {
        Ok(self.xcr0)
    }
    fn xinuse(&mut self) -> Result<u64, StateError> {
        Ok(self.xinuse)
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        self.check(addr, buf.len(), AccessKind::Read)?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = *self.mem.get(&(addr + i as u64)).unwrap_or(&0);
        }
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.check(addr, data.len(), AccessKind::Write)?;
        for (i, b) in data.iter().enumerate() {
            self.mem.insert(addr + i as u64, *b);
        }
        Ok(())
    }
}
