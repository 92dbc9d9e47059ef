//! A tiny output layer: decimal and hex numbers without `core::fmt`.
//!
//! Every guest instruction is expensive under emulation, so values are rendered with a
//! few divisions into a stack buffer and written out as one byte slice.

/// Somewhere bytes can be written: the serial port, or a [`Line`] buffer.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A value that can render itself into a [`Sink`].
pub trait Show {
    fn show<S: Sink>(&self, out: &mut S);
}

impl Show for str {
    fn show<S: Sink>(&self, out: &mut S) {
        out.put(self.as_bytes());
    }
}

impl<T: Show + ?Sized> Show for &T {
    fn show<S: Sink>(&self, out: &mut S) {
        (**self).show(out)
    }
}

fn show_decimal<S: Sink>(mut value: u64, out: &mut S) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put(&digits[at..]);
}

macro_rules! show_unsigned {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show<S: Sink>(&self, out: &mut S) {
                show_decimal(*self as u64, out)
            }
        }
    )*};
}
show_unsigned!(u8, u16, u32, u64, usize);

impl Show for i64 {
    fn show<S: Sink>(&self, out: &mut S) {
        if *self < 0 {
            out.put(b"-");
        }
        show_decimal(self.unsigned_abs(), out)
    }
}

/// A number printed as `digits` lowercase hex digits, zero padded, without a prefix.
#[derive(Clone, Copy, Debug)]
pub struct Hex {
    pub value: u64,
    pub digits: u8,
}

/// `hex(0x1f, 4)` shows as `001f`.
pub fn hex(value: u64, digits: u8) -> Hex {
    Hex { value, digits }
}

impl Show for Hex {
    fn show<S: Sink>(&self, out: &mut S) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 16];
        let count = (self.digits as usize).clamp(1, 16);
        for (i, slot) in buf[..count].iter_mut().enumerate() {
            let shift = 4 * (count - 1 - i);
            *slot = DIGITS[((self.value >> shift) & 0xf) as usize];
        }
        out.put(&buf[..count]);
    }
}

/// A fixed-size line buffer, used for probe failure reasons. Text past the end is dropped.
#[derive(Clone)]
pub struct Line {
    buf: [u8; 120],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; 120],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for Line {
    fn put(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let take = bytes.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
    }
}

impl Show for Line {
    fn show<S: Sink>(&self, out: &mut S) {
        out.put(self.as_bytes())
    }
}

/// Writes each argument to a sink in turn: `show!(sink, "cpus ", n, "\n")`.
#[macro_export]
macro_rules! show {
    ($sink:expr $(, $item:expr)* $(,)?) => {{
        let sink = &mut $sink;
        $( $crate::text::Show::show(&$item, sink); )*
    }};
}

/// Builds a [`Line`] from its arguments: `format_line!("only ", up, " of ", total, " CPUs up")`.
#[macro_export]
macro_rules! format_line {
    ($($item:expr),* $(,)?) => {{
        let mut line = $crate::text::Line::new();
        $crate::show!(line $(, $item)*);
        line
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Line)) -> String {
        let mut line = Line::new();
        f(&mut line);
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn decimal_numbers() {
        assert_eq!(render(|l| 0u32.show(l)), "0");
        assert_eq!(render(|l| 7u8.show(l)), "7");
        assert_eq!(render(|l| 1234567890u64.show(l)), "1234567890");
        assert_eq!(render(|l| u64::MAX.show(l)), "18446744073709551615");
        assert_eq!(render(|l| (-42i64).show(l)), "-42");
    }

    #[test]
    fn hex_numbers_are_zero_padded() {
        assert_eq!(render(|l| hex(0x1af4, 4).show(l)), "1af4");
        assert_eq!(render(|l| hex(0x3, 2).show(l)), "03");
        assert_eq!(render(|l| hex(0xfee0_0000, 16).show(l)), "00000000fee00000");
        assert_eq!(render(|l| hex(0x123, 1).show(l)), "3");
    }

    #[test]
    fn line_macro_mixes_text_and_numbers() {
        let line = format_line!("only ", 1u32, " of ", 2usize, " CPUs up");
        assert_eq!(line.as_bytes(), b"only 1 of 2 CPUs up");
    }

    #[test]
    fn line_truncates_instead_of_overflowing() {
        let mut line = Line::new();
        for _ in 0..50 {
            line.put(b"abcdef");
        }
        assert_eq!(line.as_bytes().len(), 120);
    }
}
