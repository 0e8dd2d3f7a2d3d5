//! Decoding a certificate's subject `Name` (DER) into an rcgen [`DistinguishedName`].
//!
//! rcgen can only sign with an issuer whose distinguished name it holds as a value, and
//! parsing it out of an existing certificate needs rcgen's `x509-parser` feature (a dozen
//! more crates). A CA subject is a short, flat structure, so this module decodes the subset
//! rcgen itself can re-encode: one attribute per RDN, UTF8String, PrintableString or
//! IA5String values. The caller re-encodes and compares bytes, so anything decoded here
//! differently from the original is caught, never silently signed with.

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{DistinguishedName, DnType, DnValue};

const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;

/// Decodes the contents of a `Name` SEQUENCE (without its own tag and length, as
/// `webpki`'s trust anchors hold it). The error says what is not supported.
pub(crate) fn parse_subject(contents: &[u8]) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    let mut rdns = Reader(contents);
    while !rdns.is_empty() {
        let mut rdn = Reader(rdns.expect(TAG_SET)?);
        let mut attribute = Reader(rdn.expect(TAG_SEQUENCE)?);
        if !rdn.is_empty() {
            return Err("multi-valued RDN".into());
        }
        let ty = DnType::from_oid(&decode_oid(attribute.expect(TAG_OID)?)?);
        let (tag, raw) = attribute.next()?;
        if !attribute.is_empty() {
            return Err("trailing data in attribute".into());
        }
        if dn.get(&ty).is_some() {
            return Err(format!("repeated attribute {ty:?}"));
        }
        dn.push(ty, decode_value(tag, raw)?);
    }
    Ok(dn)
}

fn decode_value(tag: u8, raw: &[u8]) -> Result<DnValue, String> {
    let text = || std::str::from_utf8(raw).map_err(|_| "invalid string encoding".to_string());
    match tag {
        TAG_UTF8_STRING => Ok(DnValue::Utf8String(text()?.to_owned())),
        TAG_PRINTABLE_STRING => PrintableString::try_from(text()?)
            .map(DnValue::PrintableString)
            .map_err(|e| e.to_string()),
        TAG_IA5_STRING => Ia5String::try_from(text()?)
            .map(DnValue::Ia5String)
            .map_err(|e| e.to_string()),
        other => Err(format!("attribute value with ASN.1 tag {other:#04x}")),
    }
}

fn decode_oid(raw: &[u8]) -> Result<Vec<u64>, String> {
    let mut arcs = Vec::with_capacity(raw.len() + 1);
    let mut value: u64 = 0;
    let mut in_progress = false;
    for &byte in raw {
        if value > (u64::MAX >> 7) {
            return Err("object identifier arc too large".into());
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        in_progress = byte & 0x80 != 0;
        if !in_progress {
            if arcs.is_empty() {
                // The first sub-identifier packs the first two arcs as 40 * a + b.
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if in_progress || arcs.is_empty() {
        return Err("truncated object identifier".into());
    }
    Ok(arcs)
}

/// A cursor over DER TLVs (definite lengths, single-byte tags).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn next(&mut self) -> Result<(u8, &'a [u8]), String> {
        let truncated = || "truncated DER".to_string();
        let (&tag, rest) = self.0.split_first().ok_or_else(truncated)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err("unsupported DER length".into());
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (value, after) = rest.split_at(len);
        self.0 = after;
        Ok((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let (found, value) = self.next()?;
        if found != tag {
            return Err(format!("expected ASN.1 tag {tag:#04x}, found {found:#04x}"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SET { SEQUENCE { OID, value } }` for one attribute.
    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut attr = vec![TAG_OID, oid.len() as u8];
        attr.extend_from_slice(oid);
        attr.extend_from_slice(&[tag, value.len() as u8]);
        attr.extend_from_slice(value);
        let mut seq = vec![TAG_SEQUENCE, attr.len() as u8];
        seq.extend_from_slice(&attr);
        let mut set = vec![TAG_SET, seq.len() as u8];
        set.extend_from_slice(&seq);
        set
    }

    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

    #[test]
    fn decodes_common_name_and_organisation_in_order() {
        let mut der = rdn(OID_O, TAG_PRINTABLE_STRING, b"sixfold");
        der.extend(rdn(OID_CN, TAG_UTF8_STRING, "cluster CA \u{e9}".as_bytes()));
        let dn = parse_subject(&der).unwrap();
        let entries: Vec<_> = dn.iter().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, &DnType::OrganizationName);
        assert_eq!(
            entries[0].1,
            &DnValue::PrintableString(PrintableString::try_from("sixfold").unwrap())
        );
        assert_eq!(entries[1].0, &DnType::CommonName);
        assert_eq!(
            entries[1].1,
            &DnValue::Utf8String("cluster CA \u{e9}".into())
        );
    }

    #[test]
    fn decodes_multi_byte_oid_arcs() {
        // 1.2.840.113549.1.9.1 (emailAddress)
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        assert_eq!(decode_oid(&oid).unwrap(), vec![1, 2, 840, 113549, 1, 9, 1]);
        assert_eq!(decode_oid(&[0x55, 0x04, 0x03]).unwrap(), vec![2, 5, 4, 3]);
        assert!(decode_oid(&[0x86]).is_err());
        assert!(decode_oid(&[]).is_err());
    }

    #[test]
    fn rejects_what_rcgen_cannot_reproduce() {
        let mut repeated = rdn(OID_CN, TAG_UTF8_STRING, b"a");
        repeated.extend(rdn(OID_CN, TAG_UTF8_STRING, b"b"));
        assert!(parse_subject(&repeated).unwrap_err().contains("repeated"));

        let bmp = rdn(OID_CN, 0x1e, &[0, b'a']);
        assert!(parse_subject(&bmp).unwrap_err().contains("0x1e"));

        let mut truncated = rdn(OID_CN, TAG_UTF8_STRING, b"abc");
        truncated.pop();
        assert!(parse_subject(&truncated).is_err());
    }
}
