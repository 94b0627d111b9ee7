//! Numbers from the client, bounded before they reach a query: an id, a page or a size out of
//! range is a `400` with a JSON error that says the range, never an overflow.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use crate::error::ApiError;

/// The last page any listing serves: 20 million items at 20 a page.
pub const MAX_PAGE: u64 = 1_000_000;

/// A whole number from the query string in `range`; `default` when absent (`None`: required).
pub fn query_number(
    params: &HashMap<String, String>,
    name: &str,
    range: RangeInclusive<u64>,
    default: Option<u64>,
) -> Result<u64, ApiError> {
    let out_of_range = || {
        ApiError::bad_request(format!(
            "{name} must be a whole number from {} to {}",
            range.start(),
            range.end()
        ))
    };
    match params.get(name).map(|v| v.trim()) {
        None | Some("") => default.ok_or_else(|| {
            ApiError::bad_request(format!("{name} must be provided in request query"))
        }),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(out_of_range),
    }
}

/// An id from a path. Not a number at all: no such endpoint (`404`, as SimpleLogin answers);
/// a number that cannot be an id (zero, negative, past 2^63): `400`.
pub fn path_id(raw: &str) -> Result<i64, ApiError> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::not_found());
    }
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("id must be a whole number from 1 to {}", i64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_bounded() {
        let params = |v: &str| HashMap::from([("page_id".to_string(), v.to_string())]);
        assert_eq!(
            query_number(&params("3"), "page_id", 0..=MAX_PAGE, None).ok(),
            Some(3)
        );
        for bad in ["-1", "9223372036854775807", "1e3", "x", "1000001"] {
            assert!(
                query_number(&params(bad), "page_id", 0..=MAX_PAGE, None).is_err(),
                "{bad}"
            );
        }
        assert!(query_number(&HashMap::new(), "page_id", 0..=MAX_PAGE, None).is_err());
        assert_eq!(
            query_number(&HashMap::new(), "n", 1..=9, Some(1)).ok(),
            Some(1)
        );
        assert_eq!(path_id("42").ok(), Some(42));
        for bad in ["0", "-5", "99999999999999999999"] {
            assert!(path_id(bad).is_err(), "{bad}");
        }
    }
}
