//! `--domain FILE`: a libvirt domain definition as the VM's configuration, and
//! `domxml-to-native FILE`, which prints the equivalent command line.
//!
//! The file becomes this VMM's own options (libvirt-domain's `to_native`), so a domain and
//! the command line a user would type for it go through the same grammars and checks;
//! options on the command line replace the file's (`--smp` given twice is the user's).
//! What the file holds and the VMM does not act on is named in one warning line.

use std::path::Path;

use libvirt_domain::{check_host, parse_domain, to_native, NativeCommand, NativeOptions};

/// The domain at `path` as this VMM's options, after checking it against this host; its
/// warnings (ignored elements, values carried only as notes) are logged.
pub fn native_command(path: &Path) -> Result<NativeCommand, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--domain {}: cannot read: {e}", path.display()))?;
    let domain = parse_domain(&text).map_err(|e| format!("--domain {}: {e}", path.display()))?;
    let host = cpu_topology::HostCpuInventory::read().map_err(|e| e.to_string())?;
    check_host(&domain, host.online()).map_err(|e| format!("--domain {}: {e}", path.display()))?;
    if let Some(warning) = domain.ignored_warning() {
        log::warn!("{warning}");
    }
    let command = to_native(&domain, &NativeOptions::default());
    for note in &command.notes {
        log::warn!("--domain {}: {note}", path.display());
    }
    Ok(command)
}

/// Replace `--domain FILE` (or `--domain=FILE`) in `args` by the domain's options; the
/// other options given keep precedence over the file's. `args[0]` is the program.
pub fn expand(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut file = None;
    let mut rest = Vec::new();
    let mut iter = args.into_iter();
    let program = iter.next().unwrap_or_default();
    while let Some(a) = iter.next() {
        if a == "--domain" {
            file = Some(iter.next().ok_or("--domain needs a file")?);
        } else if let Some(f) = a.strip_prefix("--domain=") {
            file = Some(f.to_string());
        } else {
            rest.push(a);
        }
    }
    let Some(file) = file else {
        let mut all = vec![program];
        all.extend(rest);
        return Ok(all);
    };
    let command = native_command(Path::new(&file))?;
    let mut all = vec![program];
    all.extend(command.overridden_by(&rest));
    Ok(all)
}
