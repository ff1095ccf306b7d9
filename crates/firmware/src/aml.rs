//! A small AML encoder, and a decoder for the same constructs, for the DSDT.
//!
//! Only what the DSDT needs is covered (ACPI 6.x, chapter 20 "ACPI Machine Language
//! Specification"): `DefName` (`NameOp NameString DataRefObject`), `DefPackage`
//! (`PackageOp PkgLength NumElements PackageElementList`), integers (`ZeroOp`, `OneOp`,
//! `OnesOp`, `BytePrefix`, `WordPrefix`, `DWordPrefix`, `QWordPrefix`) and the `PkgLength`
//! encoding. The decoder reads those back, so a test can check a table without `iasl`.
//!
//! ```
//! use crane86_firmware::aml::{decode, encode_name, AmlValue};
//! let s5 = AmlValue::Package(vec![AmlValue::Integer(0); 4]);
//! let aml = encode_name("_S5", &s5);
//! assert_eq!(aml, [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]);
//! assert_eq!(decode(&aml).unwrap(), vec![("_S5_".to_string(), s5)]);
//! ```

/// `ZeroOp`: the integer 0.
pub const ZERO_OP: u8 = 0x00;
/// `OneOp`: the integer 1.
pub const ONE_OP: u8 = 0x01;
/// `NameOp`: `Name(NameString, DataRefObject)`.
pub const NAME_OP: u8 = 0x08;
/// `BytePrefix`: an 8-bit integer follows.
pub const BYTE_PREFIX: u8 = 0x0A;
/// `WordPrefix`: a 16-bit integer follows.
pub const WORD_PREFIX: u8 = 0x0B;
/// `DWordPrefix`: a 32-bit integer follows.
pub const DWORD_PREFIX: u8 = 0x0C;
/// `QWordPrefix`: a 64-bit integer follows.
pub const QWORD_PREFIX: u8 = 0x0E;
/// `PackageOp`: `Package(NumElements) { ... }`.
pub const PACKAGE_OP: u8 = 0x12;
/// `DualNamePrefix`: two name segments follow.
pub const DUAL_NAME_PREFIX: u8 = 0x2E;
/// `MultiNamePrefix`: a count and that many name segments follow.
pub const MULTI_NAME_PREFIX: u8 = 0x2F;
/// `RootChar`: the name is absolute.
pub const ROOT_CHAR: u8 = b'\\';
/// `OnesOp`: the integer with all bits set.
pub const ONES_OP: u8 = 0xFF;

/// An AML data object of the kinds this module handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmlValue {
    /// An integer (encoded in the shortest form).
    Integer(u64),
    /// A package of at most 255 elements.
    Package(Vec<AmlValue>),
}

/// Why AML bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmlError {
    /// The bytes end inside an object.
    #[error("AML ends inside an object at offset {0}")]
    Truncated(usize),
    /// An opcode this decoder does not know.
    #[error("unsupported AML opcode {opcode:#04x} at offset {offset}")]
    Unsupported {
        /// The opcode byte.
        opcode: u8,
        /// Where it is.
        offset: usize,
    },
    /// A `PkgLength` that disagrees with the contents or its encoding rules.
    #[error("bad PkgLength at offset {0}")]
    BadPkgLength(usize),
    /// A name segment with a character AML does not allow.
    #[error("bad name segment at offset {0}")]
    BadName(usize),
}

/// Encodes a `PkgLength` for `content_len` bytes following it: the encoded value counts
/// the `PkgLength` bytes themselves too. One byte holds up to 63; longer lengths take 2 to
/// 4 bytes, the lead byte holding the count of extra bytes in bits 7:6 and the low nibble.
///
/// # Panics
/// If the total exceeds 2^28 - 1, the largest length AML can express.
pub fn encode_pkg_length(content_len: usize) -> Vec<u8> {
    for extra in 0..4usize {
        let total = content_len + 1 + extra;
        let fits = match extra {
            0 => total < 1 << 6,
            n => total < 1 << (4 + 8 * n),
        };
        if !fits {
            continue;
        }
        if extra == 0 {
            return vec![total as u8];
        }
        let mut out = vec![((extra as u8) << 6) | (total as u8 & 0x0F)];
        out.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
        return out;
    }
    panic!("AML PkgLength of {content_len} bytes is too large");
}

/// Encodes a `NameString`: an optional leading `\` then dot-separated segments of up to 4
/// characters each, padded with `_` (so `"_S5"` becomes `_S5_`).
///
/// # Panics
/// If a segment is empty or longer than 4 characters (a programming error in a table).
pub fn encode_name_string(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let rest = match name.strip_prefix('\\') {
        Some(rest) => {
            out.push(ROOT_CHAR);
            rest
        }
        None => name,
    };
    let segs: Vec<&str> = rest.split('.').collect();
    match segs.len() {
        1 => {}
        2 => out.push(DUAL_NAME_PREFIX),
        n => out.extend([MULTI_NAME_PREFIX, n as u8]),
    }
    for seg in segs {
        assert!(
            (1..=4).contains(&seg.len()),
            "AML name segment {seg:?} must be 1-4 characters"
        );
        let mut bytes = [b'_'; 4];
        bytes[..seg.len()].copy_from_slice(seg.as_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Encodes an integer in its shortest form.
pub fn encode_integer(value: u64) -> Vec<u8> {
    match value {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        u64::MAX => vec![ONES_OP],
        v if v <= 0xFF => vec![BYTE_PREFIX, v as u8],
        v if v <= 0xFFFF => [&[WORD_PREFIX][..], &(v as u16).to_le_bytes()].concat(),
        v if v <= 0xFFFF_FFFF => [&[DWORD_PREFIX][..], &(v as u32).to_le_bytes()].concat(),
        v => [&[QWORD_PREFIX][..], &v.to_le_bytes()].concat(),
    }
}

/// Encodes a data object.
///
/// # Panics
/// If a package has more than 255 elements (`DefVarPackage` is not supported).
pub fn encode_value(value: &AmlValue) -> Vec<u8> {
    match value {
        AmlValue::Integer(v) => encode_integer(*v),
        AmlValue::Package(elements) => {
            let count =
                u8::try_from(elements.len()).expect("AML Package holds at most 255 elements");
            let mut body = vec![count];
            for e in elements {
                body.extend(encode_value(e));
            }
            let mut out = vec![PACKAGE_OP];
            out.extend(encode_pkg_length(body.len()));
            out.extend(body);
            out
        }
    }
}

/// Encodes `Name(name, value)`.
pub fn encode_name(name: &str, value: &AmlValue) -> Vec<u8> {
    let mut out = vec![NAME_OP];
    out.extend(encode_name_string(name));
    out.extend(encode_value(value));
    out
}

/// Decodes a term list made only of `Name` objects, returning each name (segments joined
/// with `.`, a leading `\` kept, padding kept: `_S5_`) with its value.
pub fn decode(aml: &[u8]) -> Result<Vec<(String, AmlValue)>, AmlError> {
    let mut r = Reader { aml, pos: 0 };
    let mut out = Vec::new();
    while r.pos < aml.len() {
        let offset = r.pos;
        match r.byte()? {
            NAME_OP => {
                let name = r.name_string()?;
                let value = r.value()?;
                out.push((name, value));
            }
            opcode => return Err(AmlError::Unsupported { opcode, offset }),
        }
    }
    Ok(out)
}

/// A cursor over AML bytes.
struct Reader<'a> {
    aml: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, AmlError> {
        let b = *self
            .aml
            .get(self.pos)
            .ok_or(AmlError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn le(&mut self, n: usize) -> Result<u64, AmlError> {
        let bytes = self
            .aml
            .get(self.pos..self.pos + n)
            .ok_or(AmlError::Truncated(self.pos))?;
        self.pos += n;
        Ok(bytes.iter().rev().fold(0, |v, b| v << 8 | u64::from(*b)))
    }

    /// Reads a `PkgLength` and returns the offset one past the end of its package.
    fn pkg_end(&mut self) -> Result<usize, AmlError> {
        let start = self.pos;
        let lead = self.byte()?;
        let extra = usize::from(lead >> 6);
        let len = if extra == 0 {
            usize::from(lead & 0x3F)
        } else {
            if lead & 0x30 != 0 {
                return Err(AmlError::BadPkgLength(start));
            }
            let rest = self.le(extra)? as usize;
            usize::from(lead & 0x0F) | rest << 4
        };
        let end = start + len;
        if len < self.pos - start || end > self.aml.len() {
            return Err(AmlError::BadPkgLength(start));
        }
        Ok(end)
    }

    fn name_seg(&mut self) -> Result<String, AmlError> {
        let start = self.pos;
        let seg = self
            .aml
            .get(start..start + 4)
            .ok_or(AmlError::Truncated(start))?;
        let ok = (seg[0].is_ascii_uppercase() || seg[0] == b'_')
            && seg[1..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
        if !ok {
            return Err(AmlError::BadName(start));
        }
        self.pos += 4;
        Ok(String::from_utf8_lossy(seg).into_owned())
    }

    fn name_string(&mut self) -> Result<String, AmlError> {
        let mut name = String::new();
        if self.aml.get(self.pos) == Some(&ROOT_CHAR) {
            self.pos += 1;
            name.push('\\');
        }
        let count = match self.aml.get(self.pos) {
            Some(&DUAL_NAME_PREFIX) => {
                self.pos += 1;
                2
            }
            Some(&MULTI_NAME_PREFIX) => {
                self.pos += 1;
                usize::from(self.byte()?)
            }
            _ => 1,
        };
        let segs = (0..count)
            .map(|_| self.name_seg())
            .collect::<Result<Vec<_>, _>>()?;
        name.push_str(&segs.join("."));
        Ok(name)
    }

    fn value(&mut self) -> Result<AmlValue, AmlError> {
        let offset = self.pos;
        Ok(match self.byte()? {
            ZERO_OP => AmlValue::Integer(0),
            ONE_OP => AmlValue::Integer(1),
            ONES_OP => AmlValue::Integer(u64::MAX),
            BYTE_PREFIX => AmlValue::Integer(self.le(1)?),
            WORD_PREFIX => AmlValue::Integer(self.le(2)?),
            DWORD_PREFIX => AmlValue::Integer(self.le(4)?),
            QWORD_PREFIX => AmlValue::Integer(self.le(8)?),
            PACKAGE_OP => {
                let end = self.pkg_end()?;
                let count = usize::from(self.byte()?);
                let mut elements = Vec::with_capacity(count);
                while self.pos < end {
                    elements.push(self.value()?);
                }
                if self.pos != end || elements.len() > count {
                    return Err(AmlError::BadPkgLength(offset + 1));
                }
                // Elements not given are uninitialized; this decoder does not model them.
                AmlValue::Package(elements)
            }
            opcode => return Err(AmlError::Unsupported { opcode, offset }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_forms() {
        assert_eq!(encode_pkg_length(0), [1]);
        assert_eq!(encode_pkg_length(62), [63]);
        // 63 content bytes + 2 length bytes = 65 = 0x41.
        assert_eq!(encode_pkg_length(63), [0x41, 0x04]);
        // The spec's largest two-byte length, 0xFFF, then the first three-byte one.
        assert_eq!(encode_pkg_length(0xFFF - 2), [0x4F, 0xFF]);
        assert_eq!(encode_pkg_length(0xFFF - 1), [0x81, 0x00, 0x01]);
    }

    #[test]
    fn integers_take_their_shortest_form() {
        assert_eq!(encode_integer(0), [ZERO_OP]);
        assert_eq!(encode_integer(1), [ONE_OP]);
        assert_eq!(encode_integer(5), [BYTE_PREFIX, 5]);
        assert_eq!(encode_integer(0x1234), [WORD_PREFIX, 0x34, 0x12]);
        assert_eq!(
            encode_integer(0x1234_5678),
            [DWORD_PREFIX, 0x78, 0x56, 0x34, 0x12]
        );
        assert_eq!(encode_integer(1 << 32).len(), 9);
        assert_eq!(encode_integer(u64::MAX), [ONES_OP]);
    }

    #[test]
    fn names() {
        assert_eq!(encode_name_string("_S5"), b"_S5_");
        assert_eq!(encode_name_string("\\_SB.PCI0"), b"\\\x2e_SB_PCI0");
        assert_eq!(encode_name_string("A.B.C"), b"\x2f\x03A___B___C___");
    }

    #[test]
    fn round_trips() {
        let big = AmlValue::Package(
            (0..100u64)
                .map(|i| AmlValue::Integer(i * 0x10001))
                .collect(),
        );
        let nested = AmlValue::Package(vec![
            AmlValue::Integer(7),
            AmlValue::Package(vec![
                AmlValue::Integer(u64::MAX),
                AmlValue::Integer(1 << 40),
            ]),
        ]);
        let mut aml = encode_name("\\_SB.BIG", &big);
        aml.extend(encode_name("NEST", &nested));
        assert_eq!(
            decode(&aml).unwrap(),
            vec![("\\_SB_.BIG_".into(), big), ("NEST".into(), nested)]
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let good = encode_name("_S5", &AmlValue::Package(vec![AmlValue::Integer(0); 4]));
        for cut in 1..good.len() {
            assert!(
                decode(&good[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        assert_eq!(
            decode(&[0x10]),
            Err(AmlError::Unsupported {
                opcode: 0x10,
                offset: 0
            })
        );
        assert_eq!(decode(b"\x08s5__\x00"), Err(AmlError::BadName(1)));
    }
}
