//! Parsing a CSV field as a float, exactly as std does but faster for plain decimals.
//!
//! Owns [`parse_f64`], the parser of every prediction and regression target. It must never
//! return a value that differs from `str::parse::<f64>` by a single bit: scores are compared
//! with scikit-learn's, and a property test holds it to std.

/// Parses a trimmed CSV field as `str::parse::<f64>` does, with the same result bit for bit.
///
/// Plain decimals (`-12.3456`, at most 19 digits, at most 22 after the point) take Clinger's
/// fast path: the digits as an integer below 2^53 and a power of ten up to 1e22 are both exact
/// doubles, so one IEEE division is the correctly rounded value, which is what std computes.
/// Everything else (exponents, `inf`, long mantissas) goes to std.
#[inline]
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // At most 19 digits (with or without a point): the mantissa stays below 10^19 < 2^64.
    if !digits.is_empty() && digits.len() <= 19 {
        let mut mantissa = 0u64;
        let mut count = 0usize;
        let mut scale = 0usize;
        let mut point = false;
        let mut plain = true;
        for &b in digits {
            match b {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(b - b'0');
                    count += 1;
                    scale += usize::from(point);
                }
                b'.' if !point => point = true,
                _ => {
                    plain = false;
                    break;
                }
            }
        }
        if plain && count > 0 && mantissa <= 1 << 53 && scale < POW10.len() {
            let value = mantissa as f64 / POW10[scale];
            return Some(if negative { -value } else { value });
        }
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mantissas_are_left_to_std() {
        for text in [
            "99999999999999999999",
            "18446744073709551617",
            "9007199254740993",
            "0.30000000000000004441",
        ] {
            assert_eq!(parse_f64(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn numbers_parse_bit_for_bit_like_std(
            text in "[-+]?[0-9]{0,21}(\\.[0-9]{0,24})?([eE][-+]?[0-9]{1,3})?|inf|NaN|[0-9.+-]{0,6}",
            value in proptest::num::f64::ANY,
            decimals in 0usize..20,
        ) {
            let std: Option<f64> = text.parse().ok();
            proptest::prop_assert_eq!(parse_f64(text.as_bytes()).map(f64::to_bits), std.map(f64::to_bits));
            for text in [format!("{value}"), format!("{value:.decimals$}")] {
                let std: Option<f64> = text.parse().ok();
                proptest::prop_assert_eq!(parse_f64(text.as_bytes()).map(f64::to_bits), std.map(f64::to_bits));
            }
        }
    }
}
