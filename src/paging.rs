//! Paging of list RPCs, in one place: page sizes with a default and a ceiling, and opaque
//! page tokens that are the store position of the last item returned.

use crate::domain::DomainError;

/// A page request, checked.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Items to return.
    pub size: usize,
    /// Return items before this store position (0 = from the newest).
    pub before: i64,
}

impl Page {
    /// Parses a request's size and token; `size <= 0` means `default`, and `max` caps it.
    pub fn parse(size: i32, token: &str, default: usize, max: usize) -> Result<Page, DomainError> {
        let size = if size <= 0 {
            default
        } else {
            (size as usize).min(max)
        };
        let before = if token.is_empty() {
            0
        } else {
            token.parse().map_err(|_| {
                DomainError::invalid("page_token", "is not a token this service returned")
            })?
        };
        Ok(Page { size, before })
    }

    /// Trims `rows` (fetched with `size + 1`) to the page and returns the next token.
    pub fn finish<T>(&self, rows: &mut Vec<(i64, T)>) -> String {
        if rows.len() > self.size {
            rows.truncate(self.size);
            rows.last()
                .map(|(seq, _)| seq.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_cap_and_tokens_round_trip() {
        let p = Page::parse(0, "", 50, 500).unwrap();
        assert_eq!((p.size, p.before), (50, 0));
        assert_eq!(Page::parse(10_000, "", 50, 500).unwrap().size, 500);
        let mut rows: Vec<(i64, ())> = vec![(9, ()), (8, ()), (7, ())];
        let p = Page::parse(2, "", 50, 500).unwrap();
        let next = p.finish(&mut rows);
        assert_eq!((rows.len(), next.as_str()), (2, "8"));
        assert_eq!(Page::parse(2, &next, 50, 500).unwrap().before, 8);
        assert!(Page::parse(2, "garbage", 50, 500).is_err());
    }
}
