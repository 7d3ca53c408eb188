//! Random identifiers: order and transaction ids (UUID version 4, as upstream) and trace
//! and span ids. Not cryptographic: these name things, they protect nothing.

/// A random UUID (version 4, RFC 9562 variant) in its hyphenated lower-case form.
pub fn uuid_v4() -> String {
    let mut v = fastrand::u128(..);
    // Version 4 in bits 48..52, variant 0b10 in bits 64..66 (counting from the left).
    v = (v & !(0xf << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant() {
        for _ in 0..100 {
            let id = uuid_v4();
            assert_eq!(id.len(), 36, "{id}");
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        }
        assert_ne!(uuid_v4(), uuid_v4());
    }
}
