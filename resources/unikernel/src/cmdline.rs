//! The guest command line: whitespace-separated `key=value` tokens.
//!
//! Probes are requested with `probe=NAME[:ARG][,NAME[:ARG]...]` (the key may repeat);
//! other settings are plain keys such as `nestor.cpus=2` or `blk_sector=2048`.

/// A borrowed command line.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    text: &'a str,
}

/// One requested probe: `hold:3000` is name `hold` with argument `3000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRequest<'a> {
    pub name: &'a str,
    pub arg: Option<&'a str>,
}

impl<'a> Cmdline<'a> {
    pub fn new(text: &'a str) -> Self {
        Cmdline { text }
    }

    /// The command line in `bytes`, up to the first NUL; invalid UTF-8 cuts it short.
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let bytes = &bytes[..end];
        let text = match core::str::from_utf8(bytes) {
            Ok(text) => text,
            // Keep the valid prefix before the first bad byte.
            Err(err) => core::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or(""),
        };
        Cmdline { text }
    }

    pub fn as_str(&self) -> &'a str {
        self.text
    }

    pub fn tokens(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace()
    }

    /// The value of the last `key=value` token (later settings override earlier ones).
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.values(key).last()
    }

    /// The values of every `key=value` token, in order.
    pub fn values<'k>(&self, key: &'k str) -> impl Iterator<Item = &'a str> + 'k
    where
        'a: 'k,
    {
        self.tokens().filter_map(move |token| {
            let (k, v) = token.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// True when the key is present, as `key` or `key=...`.
    pub fn has(&self, key: &str) -> bool {
        self.tokens()
            .any(|token| token == key || token.split_once('=').is_some_and(|(k, _)| k == key))
    }

    /// A numeric value (decimal, or hex with `0x`).
    pub fn number(&self, key: &str) -> Option<u64> {
        parse_number(self.value(key)?)
    }

    /// Every probe requested by the `probe=` tokens, in order.
    pub fn probes<'k>(&self) -> impl Iterator<Item = ProbeRequest<'a>> + 'k
    where
        'a: 'k,
    {
        self.values("probe").flat_map(probe_requests)
    }

    /// True when at least one `probe=` token is present.
    pub fn wants_probes(&self) -> bool {
        self.values("probe").next().is_some()
    }
}

/// Splits `a,b:1,c` into probe requests, skipping empty names.
pub fn probe_requests(list: &str) -> impl Iterator<Item = ProbeRequest<'_>> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once(':') {
            Some((name, arg)) => ProbeRequest {
                name,
                arg: Some(arg),
            },
            None => ProbeRequest {
                name: item,
                arg: None,
            },
        })
}

/// Parses `1234` or `0x4d2`; `None` for anything else, including overflow.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits.bytes() {
        let digit = (c as char).to_digit(radix)? as u64;
        value = value.checked_mul(radix as u64)?.checked_add(digit)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_last_one_wins() {
        let c = Cmdline::new("console=ttyS0 nestor.cpus=2  nestor.mem_mib=128 nestor.cpus=4");
        assert_eq!(c.value("console"), Some("ttyS0"));
        assert_eq!(c.number("nestor.cpus"), Some(4));
        assert_eq!(c.number("nestor.mem_mib"), Some(128));
        assert_eq!(c.value("nestor"), None);
        assert_eq!(c.value("missing"), None);
    }

    #[test]
    fn has_matches_bare_and_valued_keys() {
        let c = Cmdline::new("quiet probe=boot");
        assert!(c.has("quiet"));
        assert!(c.has("probe"));
        assert!(!c.has("pro"));
    }

    #[test]
    fn probe_lists_with_arguments() {
        let c = Cmdline::new("probe=boot,hold:3000,,pci blk_sector=2048 probe=all");
        let got: Vec<_> = c.probes().collect();
        assert_eq!(
            got,
            vec![
                ProbeRequest {
                    name: "boot",
                    arg: None
                },
                ProbeRequest {
                    name: "hold",
                    arg: Some("3000")
                },
                ProbeRequest {
                    name: "pci",
                    arg: None
                },
                ProbeRequest {
                    name: "all",
                    arg: None
                },
            ]
        );
        assert!(c.wants_probes());
        assert_eq!(c.number("blk_sector"), Some(2048));
        assert!(!Cmdline::new("console=ttyS0").wants_probes());
    }

    #[test]
    fn from_bytes_stops_at_nul_and_bad_utf8() {
        assert_eq!(
            Cmdline::from_bytes(b"probe=boot\0junk").as_str(),
            "probe=boot"
        );
        assert_eq!(Cmdline::from_bytes(b"a=1 \xff b=2").as_str(), "a=1 ");
        assert_eq!(Cmdline::from_bytes(b"").as_str(), "");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("3000"), Some(3000));
        assert_eq!(parse_number("0x800"), Some(0x800));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("18446744073709551616"), None);
    }
}
