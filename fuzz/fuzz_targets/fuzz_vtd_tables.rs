#![no_main]
//! VT-d's table walks over guest-written memory: the root, context and second-level page
//! tables of DMA remapping (`translate`) and the interrupt remapping table
//! (`remap_interrupt`). Every table entry, the latched RTADDR/IRTA, the requester id, the
//! I/O address and the MSI come from the input. Guest memory is the rest of the input,
//! mirrored over the whole address space so that any pointer the walk follows lands in it.
//! Nothing may panic; a translation keeps the offset inside a 4 KiB page, and a remapped
//! interrupt is an ordinary (compatibility-format) MSI to the LAPIC window.
use libfuzzer_sys::fuzz_target;
use x86_devices::pci::MsiMessage;
use x86_devices::vtd_tables::{is_remappable, remap_interrupt, translate, DmaMemory, IrTable};

#[derive(Debug)]
struct Mirrored(Vec<u8>);

impl DmaMemory for Mirrored {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let len = self.0.len() as u64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0[(gpa.wrapping_add(i as u64) % len) as usize];
        }
        true
    }

    fn write(&self, _gpa: u64, _buf: &[u8]) -> bool {
        false
    }
}

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, v) in b.iter_mut().enumerate() {
        *v = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

const HEADER: usize = 6 * 8;

fuzz_target!(|data: &[u8]| {
    if data.len() <= HEADER {
        return;
    }
    let mem = Mirrored(data[HEADER..].to_vec());
    let (root, iova, flags) = (word(data, 0), word(data, 1), word(data, 2));
    let sid = flags as u16;
    let write = flags & (1 << 16) != 0;
    if let Ok(gpa) = translate(&mem, root, sid, iova, write) {
        assert_eq!(gpa & 0xfff, iova & 0xfff, "iova {iova:#x} -> gpa {gpa:#x}");
    }

    let table = IrTable::from_irta(word(data, 3), flags & (1 << 17) != 0);
    let msg = MsiMessage {
        address: word(data, 4),
        data: word(data, 5) as u32,
    };
    let requester = (flags & (1 << 18) != 0).then_some(sid);
    if is_remappable(&msg) {
        if let Ok(out) = remap_interrupt(&mem, &table, &msg, requester) {
            assert!(!is_remappable(&out), "{out:?}");
            assert_eq!((out.address & 0xffff_ffff) >> 20, 0xfee, "{out:?}");
        }
    }
});
