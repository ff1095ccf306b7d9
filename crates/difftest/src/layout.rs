//! Where each register sits in a stub's `g` packet, from its XML target description
//! (`qXfer:features:read:target.xml` and the files it includes). QEMU's x86-64 and i386
//! descriptions differ (register names, widths, which control registers are there), and
//! change between versions; reading the description keeps both working.

/// One register of the description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reg {
    /// Its name (`rax`, `eip`, `cs_base`, `xmm3`...).
    pub name: String,
    /// Its number (for `p`/`P` packets).
    pub number: usize,
    /// Byte offset in the `g` packet.
    pub offset: usize,
    /// Size in bytes.
    pub bytes: usize,
}

/// The registers of a target, in `g`-packet order.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// The registers.
    pub regs: Vec<Reg>,
}

/// The value of attribute `name` in one XML tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The tags named `element` in `xml`, each as the text between `<` and `>`.
fn tags<'a>(xml: &'a str, element: &str) -> Vec<&'a str> {
    let open = format!("<{element} ");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let Some(end) = rest[i..].find('>') else {
            break;
        };
        out.push(&rest[i..i + end]);
        rest = &rest[i + end..];
    }
    out
}

/// `xml` without its comments: QEMU 7.2's x86-64 description lists the CS/SS/DS/ES
/// bases inside a comment, and its register packet does not carry them.
fn strip_comments(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i..].find("-->") {
            Some(end) => rest = &rest[i + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

impl Layout {
    /// Builds the layout from the top-level description, fetching included files through
    /// `fetch` (by their `href`).
    pub fn parse<E>(
        top: &str,
        mut fetch: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<Layout, E> {
        let top = &strip_comments(top);
        let mut layout = Layout::default();
        let mut offset = 0;
        let mut number = 0;
        let mut add = |xml: &str, layout: &mut Layout| {
            for tag in tags(xml, "reg") {
                let (Some(name), Some(bits)) = (attr(tag, "name"), attr(tag, "bitsize")) else {
                    continue;
                };
                let Ok(bits) = bits.parse::<usize>() else {
                    continue;
                };
                if let Some(n) = attr(tag, "regnum").and_then(|n| n.parse().ok()) {
                    number = n;
                }
                layout.regs.push(Reg {
                    name: name.to_string(),
                    number,
                    offset,
                    bytes: bits / 8,
                });
                offset += bits / 8;
                number += 1;
            }
        };
        add(top, &mut layout);
        for inc in tags(top, "xi:include") {
            if let Some(href) = attr(inc, "href") {
                let xml = strip_comments(&fetch(href)?);
                add(&xml, &mut layout);
            }
        }
        Ok(layout)
    }

    /// The register called `name`.
    pub fn reg(&self, name: &str) -> Option<&Reg> {
        self.regs.iter().find(|r| r.name == name)
    }

    /// Register `name`'s little-endian value in a `g` packet, if the packet covers it.
    pub fn value(&self, g: &[u8], name: &str) -> Option<u128> {
        let r = self.reg(name)?;
        let bytes = g.get(r.offset..r.offset + r.bytes)?;
        let mut v = [0u8; 16];
        let n = bytes.len().min(16);
        v[..n].copy_from_slice(&bytes[..n]);
        Some(u128::from_le_bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_followed_and_offsets_accumulate() {
        let top = r#"<target><architecture>i386:x86-64</architecture><xi:include href="a.xml"/></target>"#;
        let a = r#"<feature><reg name="rax" bitsize="64" type="int64"/><reg name="eflags" bitsize="32"/><reg name="cs" bitsize="32"/></feature>"#;
        let l = Layout::parse(top, |h| {
            assert_eq!(h, "a.xml");
            Ok::<_, ()>(a.to_string())
        })
        .unwrap();
        let cs = l.reg("cs").unwrap();
        assert_eq!((cs.offset, cs.bytes, cs.number), (12, 4, 2));
        let commented = Layout::parse(
            r#"<x><!--reg name="cs_base" bitsize="64"/--><reg name="rax" bitsize="64"/></x>"#,
            |_| Ok::<_, ()>(String::new()),
        )
        .unwrap();
        assert_eq!(commented.regs.len(), 1);
        let g = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0];
        assert_eq!(l.value(&g, "eflags"), Some(2));
        assert_eq!(l.value(&g, "cs"), Some(8));
        assert_eq!(l.value(&g, "rbx"), None);
    }
}
