//! Personal data detectors for what participants receive, with validation where a checksum
//! exists: e-mail addresses, phone numbers (French and E.164), IBAN (mod 97), payment cards
//! (Luhn), French NIR (key 97 − n mod 97, Corsica's 2A/2B included), SIREN/SIRET (Luhn, La
//! Poste's rule), IPv4/IPv6, dates that look like birth dates, and column names that suggest
//! a direct identifier.
//!
//! Digits are read as runs of groups ("06 12 34 56 78", "4111-1111-1111-1111"); a detector
//! accepts only the groupings its numbers are written in, and the longest valid match
//! consumes its groups, so a wrong-key NIR does not turn into a phone number. IBAN and
//! e-mail spans are blanked before digits are read.
//!
//! It reports which detector matched a cell, never what matched: nothing here returns or
//! stores a cell's content.

use memchr::{memchr, memchr_iter};

pub use super::detectors::{CellHits, Detector};
use super::generalise::{is_full_date, parse_date};
use super::pii_numbers::{blank_ibans, corsican_nir, digit_runs, number};
pub use super::pii_numbers::{iban_valid, luhn_valid, nir_valid};

/// Runs every detector over one cell. Dates with a year up to `max_birth_year` (and from
/// 1900) count as birth-date-like.
pub fn scan_cell(cell: &[u8], max_birth_year: i32) -> CellHits {
    let mut out = CellHits::default();
    let has_digit = cell.iter().any(u8::is_ascii_digit);
    let has_at = memchr(b'@', cell).is_some();
    if !has_digit && !has_at {
        return out;
    }
    let mut s = cell.to_vec();
    if has_at && blank_emails(&mut s) {
        out.hits |= Detector::Email.bit();
    }
    if !has_digit {
        return out;
    }
    if blank_ibans(&mut s) {
        out.hits |= Detector::Iban.bit();
    }
    if corsican_nir(&s) {
        out.hits |= Detector::Nir.bit();
    }
    digit_runs(&s, &mut out);
    if memchr(b':', &s).is_some() && has_ipv6(&s) {
        out.hits |= Detector::Ipv6.bit();
    }
    if memchr(b'.', &s).is_some() && has_ipv4(&s) {
        out.hits |= Detector::Ipv4.bit();
    }
    for token in s.split(|b| b.is_ascii_whitespace() || b",;()[]\"'<>".contains(b)) {
        let token = token.strip_suffix(b".").unwrap_or(token);
        if token.len() < 10 || token.len() > 25 {
            continue;
        }
        let Ok(t) = std::str::from_utf8(token) else {
            continue;
        };
        if is_full_date(t)
            && let Some((y, _, _)) = parse_date(t)
            && (1900..=max_birth_year).contains(&y)
        {
            out.hits |= Detector::BirthDate.bit();
            out.birth_year = Some(out.birth_year.map_or(y, |b| b.min(y)));
        }
    }
    out
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&*+-/=?^_`{|}~.".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Finds e-mail addresses, blanks them (so their digits are not read again), and says
/// whether there was one.
fn blank_emails(s: &mut [u8]) -> bool {
    let mut found = false;
    let ats: Vec<usize> = memchr_iter(b'@', s).collect();
    for at in ats {
        let mut i = at;
        while i > 0 && is_local(s[i - 1]) {
            i -= 1;
        }
        while i < at && s[i] == b'.' {
            i += 1;
        }
        let mut j = at + 1;
        while j < s.len() && is_domain(s[j]) {
            j += 1;
        }
        while j > at + 1 && matches!(s[j - 1], b'.' | b'-') {
            j -= 1;
        }
        let local = &s[i..at];
        let domain = &s[at + 1..j];
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.last() != Some(&b'.')
            && !local.windows(2).any(|w| w == b"..");
        let labels: Vec<&[u8]> = domain.split(|&b| b == b'.').collect();
        let domain_ok = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.len() <= 63 && l[0] != b'-' && l[l.len() - 1] != b'-')
            && labels
                .last()
                .is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
        if local_ok && domain_ok {
            found = true;
            s[i..j].fill(b' ');
        }
    }
    found
}

/// A dotted quad of octets 0-255 (no leading zeros), not inside a word ("v1.2.3.4b").
fn has_ipv4(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if !(s[i].is_ascii_digit() || s[i] == b'.') {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'.') {
            i += 1;
        }
        let bounded = (start == 0 || !s[start - 1].is_ascii_alphanumeric())
            && (i == s.len() || !s[i].is_ascii_alphanumeric());
        let tok = &s[start..i];
        let tok = tok.strip_suffix(b".").unwrap_or(tok);
        let parts: Vec<&[u8]> = tok.split(|&b| b == b'.').collect();
        if bounded
            && parts.len() == 4
            && parts.iter().all(|p| {
                !p.is_empty() && p.len() <= 3 && (p.len() == 1 || p[0] != b'0') && number(p) <= 255
            })
        {
            return true;
        }
    }
    false
}

fn has_ipv6(s: &[u8]) -> bool {
    s.split(|b| !(b.is_ascii_hexdigit() || b":.%".contains(b)))
        .any(|tok| {
            let tok = tok.split(|&b| b == b'%').next().unwrap_or(tok);
            tok.iter().filter(|&&b| b == b':').count() >= 2
                && tok.iter().any(u8::is_ascii_hexdigit)
                && std::str::from_utf8(tok)
                    .ok()
                    .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                    .is_some()
        })
}

/// Lowercases, strips common Latin accents, and splits camelCase and separators.
fn name_tokens(name: &str) -> Vec<String> {
    let mut tokens = vec![String::new()];
    let mut prev_lower = false;
    for c in name.chars() {
        let base = match c {
            'à' | 'â' | 'ä' | 'À' | 'Â' | 'Ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
            'î' | 'ï' | 'Î' | 'Ï' => 'i',
            'ô' | 'ö' | 'Ô' | 'Ö' => 'o',
            'ù' | 'û' | 'ü' | 'Ù' | 'Û' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            c => c,
        };
        if !base.is_alphanumeric() {
            tokens.push(String::new());
            prev_lower = false;
            continue;
        }
        if base.is_uppercase() && prev_lower {
            tokens.push(String::new());
        }
        prev_lower = base.is_lowercase();
        tokens
            .last_mut()
            .expect("never empty")
            .extend(base.to_lowercase());
    }
    tokens.retain(|t| !t.is_empty());
    tokens
}

/// Keywords matched as whole tokens (short ones would match inside other words).
const NAME_TOKENS: &[&str] = &[
    "nom", "name", "mail", "tel", "rue", "nir", "ssn", "dob", "ip", "siren", "siret", "bic",
    "insee", "mobile", "portable", "street", "ne", "nee",
];

/// Keywords matched anywhere in the joined tokens.
const NAME_PARTS: &[&str] = &[
    "email",
    "courriel",
    "prenom",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "username",
    "telephone",
    "phone",
    "iban",
    "passport",
    "passeport",
    "naissance",
    "birth",
    "adresse",
    "address",
    "customerid",
    "clientid",
    "userid",
    "patientid",
    "accountnumber",
    "cardnumber",
    "numerocarte",
    "securitesociale",
    "socialsecurity",
];

/// The keyword by which a column name suggests a direct identifier, if any.
pub fn identifier_name(name: &str) -> Option<&'static str> {
    let tokens = name_tokens(name);
    if let Some(k) = NAME_TOKENS.iter().find(|k| tokens.iter().any(|t| t == *k)) {
        return Some(k);
    }
    let joined: String = tokens.concat();
    NAME_PARTS.iter().find(|k| joined.contains(*k)).copied()
}

/// Whether a column name says it holds birth dates.
pub fn birth_name(name: &str) -> bool {
    let joined = name_tokens(name).concat();
    ["birth", "naissance", "dob", "datene"]
        .iter()
        .any(|k| joined.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(cell: &str) -> Vec<Detector> {
        let h = scan_cell(cell.as_bytes(), 2010);
        Detector::ALL.into_iter().filter(|d| h.has(*d)).collect()
    }

    #[test]
    fn contact_details_and_addresses_are_found_in_free_text() {
        use Detector::*;
        assert_eq!(hits("écrire à jean.dupont@example.fr svp"), vec![Email]);
        assert_eq!(hits("user@localhost"), Vec::<Detector>::new());
        assert_eq!(hits("appeler le 06 12 34 56 78"), vec![Phone]);
        assert_eq!(hits("+33 6 12 34 56 78"), vec![Phone]);
        assert_eq!(hits("+33 (0)6 12 34 56 78"), vec![Phone]);
        assert_eq!(hits("+44 20 7946 0958"), vec![Phone]);
        assert_eq!(hits("0612345678"), vec![Phone]);
        assert_eq!(hits("from 192.168.1.20 at noon"), vec![Ipv4]);
        assert_eq!(hits("2001:db8::8a2e:370:7334"), vec![Ipv6]);
        assert_eq!(hits("born 17/05/1985"), vec![BirthDate]);
        assert_eq!(hits("2023-11-02"), Vec::<Detector>::new());
    }

    #[test]
    fn ordinary_numbers_and_times_are_not_personal_data() {
        for cell in [
            "0.123456",
            "12:30:00",
            "1.2.3",
            "version 1.2.3.4b",
            "42",
            "3.14159",
            "2024",
            "-12.5e3",
        ] {
            assert_eq!(hits(cell), Vec::<Detector>::new(), "{cell}");
        }
    }

    #[test]
    fn column_names_that_suggest_identifiers_are_recognised() {
        for name in [
            "Nom",
            "prénom",
            "e-mail",
            "EmailAddress",
            "customer_name",
            "téléphone",
            "IBAN",
            "nir",
            "date_de_naissance",
            "ip",
        ] {
            assert!(identifier_name(name).is_some(), "{name}");
        }
        for name in [
            "amount",
            "merchant_category",
            "label",
            "zip",
            "tip",
            "nominal",
        ] {
            assert_eq!(identifier_name(name), None, "{name}");
        }
        assert!(birth_name("date_naissance") && birth_name("DOB") && !birth_name("created"));
    }
}

#[cfg(test)]
/// The number detectors (`pii_numbers`), through the one entry point that runs them.
mod number_tests {
    use super::{Detector, scan_cell};

    fn hits(cell: &str) -> Vec<Detector> {
        let h = scan_cell(cell.as_bytes(), 2010);
        Detector::ALL.into_iter().filter(|d| h.has(*d)).collect()
    }

    #[test]
    fn checksummed_numbers_are_found_only_when_their_check_passes() {
        use Detector::*;
        assert_eq!(hits("1 85 05 78 006 084 91"), vec![Nir]);
        assert_eq!(hits("185057800608491"), vec![Nir]);
        assert_eq!(hits("1 85 05 78 006 084 36"), Vec::<Detector>::new());
        assert_eq!(hits("4111 1111 1111 1111"), vec![Card]);
        assert_eq!(hits("4111-1111-1111-1112"), Vec::<Detector>::new());
        assert_eq!(hits("IBAN FR76 3000 6000 0112 3456 7890 189."), vec![Iban]);
        assert_eq!(
            hits("FR76 3000 6000 0112 3456 7890 188"),
            Vec::<Detector>::new()
        );
        assert_eq!(hits("GB82WEST12345698765432"), vec![Iban]);
        assert_eq!(hits("732 829 320"), vec![Siren]);
        assert_eq!(hits("73282932000074"), vec![Siret]);
    }

    #[test]
    fn a_corsican_nir_is_checked_with_its_substituted_departement() {
        // 2 93 07 2A 004 012 is keyed as 2930719004012: key 48; with 2B, 2930718004012: 75.
        assert_eq!(hits("2 93 07 2A 004 012 48"), vec![Detector::Nir]);
        assert_eq!(hits("293072B00401275"), vec![Detector::Nir]);
        assert_eq!(hits("2 93 07 2A 004 012 75"), Vec::<Detector>::new());
    }
}
