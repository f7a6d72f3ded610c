//! Reading elements while remembering what was read, so that whatever was not can be named.

use std::collections::HashSet;
use std::str::FromStr;

use cpu_topology::HostCpuSet;
use roxmltree::{Node, NodeId};

use crate::config::Ignored;
use crate::error::DomainError;

/// Largest CPU or node id a list in a domain may name (libvirt's cpumap size is of this
/// order; the host check is [`crate::check_host`]).
pub(crate) const LIST_LIMIT: u32 = 16384;

/// Tracks the elements and attributes the parser used.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    elements: HashSet<NodeId>,
    attributes: HashSet<(NodeId, String)>,
}

/// The path of an element from `<domain>`: `cpu/numa/cell`.
pub(crate) fn path(node: Node<'_, '_>) -> String {
    let mut names: Vec<&str> = node
        .ancestors()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    names.pop(); // <domain>
    names.reverse();
    names.join("/")
}

impl Reader {
    /// Marks `node` as used.
    pub(crate) fn take(&mut self, node: Node<'_, '_>) {
        self.elements.insert(node.id());
    }

    /// The first child element called `name`, marked used.
    pub(crate) fn child<'a, 'i>(&mut self, node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
        let child = node.children().find(|c| c.has_tag_name(name))?;
        self.take(child);
        Some(child)
    }

    /// Every child element called `name`, marked used.
    pub(crate) fn children<'a, 'i>(&mut self, node: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
        let found: Vec<_> = node.children().filter(|c| c.has_tag_name(name)).collect();
        for c in &found {
            self.take(*c);
        }
        found
    }

    /// Attribute `name`, marked used.
    pub(crate) fn attr<'a>(&mut self, node: Node<'a, '_>, name: &str) -> Option<&'a str> {
        let value = node.attribute(name)?;
        self.attributes.insert((node.id(), name.to_string()));
        Some(value)
    }

    /// Attribute `name` parsed as a number.
    pub(crate) fn number<T: FromStr>(
        &mut self,
        node: Node<'_, '_>,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, DomainError> {
        self.attr(node, name)
            .map(|v| parse_number(node, name, v, expected))
            .transpose()
    }

    /// Attribute `name` as one of `choices` (`(spelling, value)`).
    pub(crate) fn choice<T: Copy>(
        &mut self,
        node: Node<'_, '_>,
        name: &str,
        choices: &[(&str, T)],
        expected: &'static str,
    ) -> Result<Option<T>, DomainError> {
        self.attr(node, name)
            .map(|v| pick(node, name, v, choices, expected))
            .transpose()
    }

    /// Attribute `name` as a libvirt CPU (or node) list.
    pub(crate) fn cpuset(
        &mut self,
        node: Node<'_, '_>,
        name: &'static str,
    ) -> Result<Option<HostCpuSet>, DomainError> {
        self.attr(node, name)
            .map(|v| {
                HostCpuSet::parse_libvirt(v, LIST_LIMIT).map_err(|source| DomainError::CpuSet {
                    element: path(node),
                    attribute: name,
                    value: v.to_string(),
                    source: Box::new(source),
                })
            })
            .transpose()
    }

    /// Everything under `root` that was not used: unused elements (their subtrees are not
    /// looked into) and unused attributes of used elements.
    pub(crate) fn ignored(&self, root: Node<'_, '_>) -> Vec<Ignored> {
        let mut out: Vec<Ignored> = Vec::new();
        let mut note = |p: String| match out.iter_mut().find(|i| i.path == p) {
            Some(i) => i.count += 1,
            None => out.push(Ignored { path: p, count: 1 }),
        };
        // Pre-order, so the list follows the document.
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            if !self.elements.contains(&node.id()) {
                note(path(node));
                continue;
            }
            for a in node.attributes() {
                if !self.attributes.contains(&(node.id(), a.name().to_string())) {
                    let base = path(node);
                    let base = if base.is_empty() { "domain" } else { &base };
                    note(format!("{base}@{}", a.name()));
                }
            }
            stack.extend(node.children().filter(|c| c.is_element()).rev());
        }
        out
    }
}

/// Parses a number, naming the element and attribute on failure.
pub(crate) fn parse_number<T: FromStr>(
    node: Node<'_, '_>,
    attribute: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, DomainError> {
    value.trim().parse().map_err(|_| DomainError::Invalid {
        element: path(node),
        attribute: attribute.to_string(),
        value: value.to_string(),
        expected,
    })
}

/// Picks the value spelled `value` from `choices`.
pub(crate) fn pick<T: Copy>(
    node: Node<'_, '_>,
    attribute: &str,
    value: &str,
    choices: &[(&str, T)],
    expected: &'static str,
) -> Result<T, DomainError> {
    choices
        .iter()
        .find(|(s, _)| *s == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| DomainError::Invalid {
            element: path(node),
            attribute: attribute.to_string(),
            value: value.to_string(),
            expected,
        })
}

/// The element's text, trimmed.
pub(crate) fn text<'a>(node: Node<'a, '_>) -> &'a str {
    node.text().unwrap_or("").trim()
}
