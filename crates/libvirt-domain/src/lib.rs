//! libvirt domain XML as a typed VM configuration.
//!
//! libvirt's domain format is what `virsh`, OpenStack Nova and KubeVirt write, so reading it
//! lets a VMM run their definitions unchanged. This crate is pure (no host access, no
//! unsafe):
//!
//! - [`parse_domain`] reads a `<domain>` into a [`DomainConfig`]: name, uuid, memory in every
//!   libvirt unit, `<vcpu>`, `<cputune>`, `<numatune>`, `<cpu>` (mode, model, fallback,
//!   vendor, features, topology, NUMA cells with distances), `<os>` kernel boot,
//!   `<features>` and the serial console. libvirt's rules are kept: cells without `id` are
//!   numbered in order, cell and guest sizes are rounded up to 1 MiB, the topology must
//!   hold exactly the vCPU count, pins name existing vCPUs.
//! - Everything else in the document (disks, interfaces, graphics, ...) is listed in
//!   [`DomainConfig::ignored`]; [`DomainConfig::ignored_warning`] is the one line to print.
//! - Malformed documents are [`DomainError`]s naming the element and attribute.
//! - [`check_host`] checks the host CPUs the domain names against the online ones.
//! - [`to_native`] gives the equivalent `vmm-reference` command line (as `virsh
//!   domxml-to-native qemu-argv` does for QEMU), with notes for what it cannot carry.
//! - [`to_xml`] writes a configuration back, e.g. a running VM's with its live pins.
//!
//! ```
//! let xml = r#"
//! <domain type='kvm'>
//!   <name>westmere</name>
//!   <memory unit='GiB'>1</memory>
//!   <vcpu placement='static' cpuset='1-4,^3,6'>4</vcpu>
//!   <cputune><vcpupin vcpu='0' cpuset='1'/><emulatorpin cpuset='6'/></cputune>
//!   <cpu mode='custom' match='exact'>
//!     <model fallback='allow'>Westmere</model>
//!     <topology sockets='2' cores='2' threads='1'/>
//!     <feature policy='disable' name='aes'/>
//!   </cpu>
//!   <devices><disk type='file' device='disk'/><graphics type='vnc'/></devices>
//! </domain>"#;
//! let d = libvirt_domain::parse_domain(xml).unwrap();
//! assert_eq!(d.vcpu.cpuset.as_ref().unwrap().to_cpu_list(), "1-2,4,6");
//! let cmd = libvirt_domain::to_native(&d, &Default::default());
//! assert_eq!(
//!     cmd.args.join(" "),
//!     "--name westmere -m 1024M --smp 4,sockets=2,cores=2,threads=1 --cpu Westmere,-aes \
//!      --cpuset 1-2,4,6 --vcpupin 0:1 --emulatorpin 6"
//! );
//! assert_eq!(
//!     d.ignored_warning().unwrap(),
//!     "domain 'westmere': not implemented, ignored: devices/disk, devices/graphics"
//! );
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
mod host;
mod native;
mod parse;
mod parse_cpu;
mod reader;
pub mod units;
mod xml;

pub use config::DomainConfig;
pub use error::DomainError;
pub use host::check_host;
pub use native::{to_native, NativeCommand, NativeOptions};
pub use parse::parse_domain;
pub use xml::to_xml;

/// Compiles and runs the README example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
