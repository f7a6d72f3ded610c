//! libvirt domain XML as a NUMA configuration: the `<cell>` elements of `<cpu><numa>`.
//!
//! ```xml
//! <cpu>
//!   <numa>
//!     <cell id='0' cpus='0-3' memory='512' unit='MiB'>
//!       <distances><sibling id='0' value='10'/><sibling id='1' value='21'/></distances>
//!     </cell>
//!     <cell id='1' cpus='4-7' memory='524288'/>
//!   </numa>
//! </cpu>
//! ```
//!
//! A whole domain definition (`virsh dumpxml`) or just its `<numa>` element will do. What
//! this VMM has no use for (`memAccess`, `discard`, `<cache>`, `<interconnects>`) is
//! ignored, as QEMU ignores what it does not model. A cell without `id` gets its position
//! (libvirt numbers such cells in document order); a cell without `memory` is an error, as
//! in libvirt. Sizes are rounded up to 1 MiB by [`NumaCell::to_option`].

use roxmltree::{Document, Node};

use super::{NumaCell, NumaError, NumaSibling};

/// The `<numa><cell>`s of a libvirt domain XML document, in document order.
pub fn cells_from_libvirt_xml(xml: &str) -> Result<Vec<NumaCell>, NumaError> {
    let doc = Document::parse(xml).map_err(|e| NumaError::LibvirtXml(e.to_string()))?;
    let cells: Vec<NumaCell> = doc
        .descendants()
        .filter(|n| n.has_tag_name("cell") && n.parent().is_some_and(|p| p.has_tag_name("numa")))
        .enumerate()
        .map(|(i, n)| cell(i, n))
        .collect::<Result<_, _>>()?;
    if cells.is_empty() {
        return Err(NumaError::LibvirtXml(
            "no <numa><cell> element found".to_string(),
        ));
    }
    Ok(cells)
}

fn number(node: Node<'_, '_>, what: &str, name: &str) -> Result<Option<u64>, NumaError> {
    node.attribute(name)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                NumaError::LibvirtXml(format!("{what}: attribute {name}='{v}' is not a number"))
            })
        })
        .transpose()
}

fn cell(position: usize, node: Node<'_, '_>) -> Result<NumaCell, NumaError> {
    let what = format!("<cell> number {}", position + 1);
    let id = number(node, &what, "id")?.unwrap_or(position as u64);
    let id = u32::try_from(id)
        .map_err(|_| NumaError::LibvirtXml(format!("{what}: id {id} is too large")))?;
    let what = format!("<cell id='{id}'>");
    let memory = number(node, &what, "memory")?
        .ok_or_else(|| NumaError::LibvirtXml(format!("{what}: no memory attribute")))?;
    let distances = node
        .children()
        .filter(|c| c.has_tag_name("distances"))
        .flat_map(|d| d.children().filter(|s| s.has_tag_name("sibling")))
        .map(|s| {
            let (sid, value) = (number(s, &what, "id")?, number(s, &what, "value")?);
            match (sid, value) {
                (Some(sid), Some(value)) => Ok(NumaSibling {
                    id: u32::try_from(sid).unwrap_or(u32::MAX),
                    value: u32::try_from(value).unwrap_or(u32::MAX),
                }),
                _ => Err(NumaError::LibvirtXml(format!(
                    "{what}: <sibling> needs id and value"
                ))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(NumaCell {
        id,
        cpus: node.attribute("cpus").unwrap_or("").to_string(),
        memory,
        unit: node.attribute("unit").map(str::to_string),
        distances,
    })
}
