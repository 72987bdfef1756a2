//! 64-bit FNV-1a, the content hash behind resource versions (xDS, KDS, snapshots) and the
//! hash suffix of synced names. Chosen because it is fully specified, so equal content gets an
//! equal hash in every process and every release (the standard library's hasher may change
//! between Rust releases), and it needs no dependency.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A running FNV-1a hash. It is an `io::Write` too, so serializers can stream into it.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(OFFSET_BASIS)
    }
}

impl Fnv1a {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes with no separator: `write(b"ab")` equals `write(b"a"); write(b"b")`.
    pub fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes
            .iter()
            .fold(self.0, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    }

    /// Feeds one field followed by a `0xff` byte (never part of UTF-8 text), so that
    /// `("ab", "c")` and `("a", "bc")` hash differently.
    pub fn write_field(&mut self, bytes: &[u8]) {
        self.write(bytes);
        self.write(&[0xff]);
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash as 16 lowercase hex digits, the form versions take.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl std::io::Write for Fnv1a {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Fnv1a::write(self, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// FNV-1a of `bytes` as 16 hex digits.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut hash = Fnv1a::new();
    hash.write(bytes);
    hash.hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        assert_eq!(Fnv1a::new().finish(), 0xcbf29ce484222325);
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn streaming_and_writing_at_once_agree() {
        let mut streamed = Fnv1a::new();
        let _ = std::io::Write::write_all(&mut streamed, b"foo");
        streamed.write(b"bar");
        assert_eq!(streamed.hex(), fnv1a_hex(b"foobar"));
    }

    #[test]
    fn fields_are_separated() {
        let mut a = Fnv1a::new();
        a.write_field(b"ab");
        a.write_field(b"c");
        let mut b = Fnv1a::new();
        b.write_field(b"a");
        b.write_field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
