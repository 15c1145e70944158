//! What the personal-data detectors are, and what one cell matched: shared by the text
//! detectors (`pii`) and the validated number detectors (`pii_numbers`).

/// One detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    /// E-mail address.
    Email,
    /// Phone number.
    Phone,
    /// IBAN.
    Iban,
    /// Payment card number.
    Card,
    /// French NIR.
    Nir,
    /// SIREN.
    Siren,
    /// SIRET.
    Siret,
    /// IPv4 address.
    Ipv4,
    /// IPv6 address.
    Ipv6,
    /// A birth-date-like date.
    BirthDate,
}

impl Detector {
    /// Every detector, in report order.
    pub const ALL: [Detector; 10] = [
        Detector::Email,
        Detector::Phone,
        Detector::Iban,
        Detector::Card,
        Detector::Nir,
        Detector::Siren,
        Detector::Siret,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::BirthDate,
    ];

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// What a match is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Detector::Email => "an e-mail address",
            Detector::Phone => "a phone number",
            Detector::Iban => "an IBAN with a valid check",
            Detector::Card => "a Luhn-valid payment card number",
            Detector::Nir => "a French social security number (NIR) with a valid key",
            Detector::Siren => "a Luhn-valid SIREN",
            Detector::Siret => "a valid SIRET",
            Detector::Ipv4 => "an IPv4 address",
            Detector::Ipv6 => "an IPv6 address",
            Detector::BirthDate => "a date that looks like a birth date",
        }
    }

    /// Whether a match in a public file refuses the challenge (direct identifiers).
    pub fn is_direct(self) -> bool {
        matches!(
            self,
            Detector::Email | Detector::Phone | Detector::Iban | Detector::Card | Detector::Nir
        )
    }
}

/// What one cell matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellHits {
    /// One bit per [`Detector`] that matched.
    pub hits: u16,
    /// One bit per checksummed detector (card, SIREN, SIRET) whose shape appeared,
    /// valid or not: random numbers pass Luhn one time in ten.
    pub shapes: u16,
    /// The year of a birth-date-like date.
    pub birth_year: Option<i32>,
}

impl CellHits {
    /// Whether `d` matched.
    pub fn has(&self, d: Detector) -> bool {
        self.hits & d.bit() != 0
    }

    /// Whether `d`'s shape appeared.
    pub fn has_shape(&self, d: Detector) -> bool {
        self.shapes & d.bit() != 0
    }
}
