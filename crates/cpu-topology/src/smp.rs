//! The `-smp` grammar (QEMU), completed by the topology issue.
