//! virsh's everyday CPU verbs over the human monitor, printed in virsh's layout:
//! `vcpupin` (table), `emulatorpin`, `vcpucount`, and `setvcpus`, which plugs or unplugs
//! vCPUs through the monitor's own `device_add` / `device_del` paths.

use std::fmt::Write as _;

use crate::backend::{CpuPlugRequest, VcpuAffinity};
use crate::commands::{backend_error, Monitor};
use crate::events::QmpEvent;

/// QOM path prefix of CPUs plugged with an id.
const PERIPHERAL: &str = "/machine/peripheral/";

/// A table as virsh prints one (`vsh-table`): each cell after one space, columns padded
/// to their widest cell plus two spaces, a rule of dashes under the header.
pub fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            out.push(' ');
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    out.push_str(&"-".repeat(widths.iter().map(|w| w + 3).sum()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `virsh vcpupin DOMAIN`: one row per vCPU with its CPU list.
pub fn format_vcpupin(rows: &[VcpuAffinity]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.index.to_string(), r.cpus.clone()])
        .collect();
    format_table(&["VCPU", "CPU Affinity"], &rows)
}

/// `virsh emulatorpin DOMAIN`.
pub fn format_emulatorpin(cpus: &str) -> String {
    format!(
        "emulator: CPU Affinity\n{}\n       *: {cpus}\n",
        "-".repeat(34)
    )
}

/// `virsh vcpucount DOMAIN` of a running domain: the maximum and current counts, each
/// for the persistent configuration and the live VM.
pub fn format_vcpucount(max: u32, boot: u32, live: u32) -> String {
    let mut out = String::new();
    for (what, when, n) in [
        ("maximum", "config", max),
        ("maximum", "live", max),
        ("current", "config", boot),
        ("current", "live", live),
    ] {
        let _ = writeln!(out, "{what:<12} {when:<12} {n:>3}");
    }
    out
}

/// `virsh setvcpus DOMAIN N --live`: plugs the lowest empty slots (ids `vcpuN`, as
/// libvirt names them) or unplugs the highest hot-plugged vCPUs until `n` are present.
/// Returns the `DEVICE_DELETED` events of completed unplugs. Nothing changes when the
/// request cannot be met as a whole (too many, too few, a boot vCPU in the way).
pub fn setvcpus(monitor: &Monitor, n: u32) -> Result<Vec<QmpEvent>, String> {
    let b = monitor.backend();
    let max = b.machine().map_err(|e| backend_error(&e).desc)?.max_cpus;
    if n == 0 {
        return Err("Invalid number of virtual CPUs".into());
    }
    if n > max {
        return Err(format!(
            "requested vcpus is greater than max allowable vcpus for the live domain: {n} > {max}"
        ));
    }
    let slots = b.hotpluggable_cpus();
    let present = slots.iter().filter(|s| s.qom_path.is_some()).count() as u32;
    let mut events = Vec::new();
    if n > present {
        let empty = slots.iter().filter(|s| s.qom_path.is_none());
        for slot in empty.take((n - present) as usize) {
            let request = CpuPlugRequest {
                id: Some(format!("vcpu{}", slot.index)),
                props: slot.props,
            };
            b.add_cpu(&request).map_err(|e| backend_error(&e).desc)?;
        }
    } else if n < present {
        let plugged = slots
            .iter()
            .rev()
            .filter_map(|s| Some((s, s.qom_path.as_ref()?)));
        let victims: Vec<_> = plugged.take((present - n) as usize).collect();
        let mut ids = Vec::new();
        for (slot, path) in victims {
            match path.strip_prefix(PERIPHERAL) {
                Some(id) => ids.push(id.to_owned()),
                None => {
                    return Err(format!(
                        "vCPU {} was present at boot and cannot be unplugged",
                        slot.index
                    ))
                }
            }
        }
        for id in ids {
            events.extend(monitor.device_del(&id).map_err(|e| e.desc)?.events_after);
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpu_topology::VcpuIndex;

    #[test]
    fn vcpupin_table_as_virsh_prints_it() {
        let rows = [
            VcpuAffinity {
                index: VcpuIndex(0),
                cpus: "0-3".into(),
            },
            VcpuAffinity {
                index: VcpuIndex(1),
                cpus: "5-47,53-63".into(),
            },
        ];
        assert_eq!(
            format_vcpupin(&rows),
            " VCPU   CPU Affinity\n----------------------\n 0      0-3\n 1      5-47,53-63\n"
        );
    }

    #[test]
    fn emulatorpin_and_vcpucount_layouts() {
        assert_eq!(
            format_emulatorpin("1-3"),
            "emulator: CPU Affinity\n----------------------------------\n       *: 1-3\n"
        );
        assert_eq!(
            format_vcpucount(4, 2, 3),
            "maximum      config         4\nmaximum      live           4\n\
             current      config         2\ncurrent      live           3\n"
        );
    }
}
