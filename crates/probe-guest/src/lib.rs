//! The embedded probe guest: reports each vCPU's CPUID view, runs CPL3 workloads
