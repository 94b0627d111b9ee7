//! The verdict of a spam filter in front of us, read from the header fields it adds. Only
//! believed from a client listed in `smtp.spam_filters`: anyone else can write these fields.

/// The score the nearest filter gave `raw`, in tenths of a point: the first field from the
/// top of SpamAssassin's `X-Spam-Status` (`score=` or `hits=`) or `X-Spam-Score`, or rspamd's
/// `X-Spamd-Result` (`[score / required]`) or `X-Rspamd-Score`. `None` when there is none, or
/// the first one cannot be read.
pub fn score(raw: &[u8]) -> Option<i32> {
    let (name, value) = fields(raw).find(|(name, _)| {
        [
            "x-spam-status",
            "x-spam-score",
            "x-spamd-result",
            "x-rspamd-score",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
    })?;
    let number = match name.to_ascii_lowercase().as_str() {
        "x-spam-status" => value
            .split([' ', ',', '\t'])
            .find_map(|t| t.strip_prefix("score=").or_else(|| t.strip_prefix("hits=")))?,
        "x-spamd-result" => {
            let (_, rest) = value.split_once('[')?;
            rest.split('/').next()?
        }
        _ => value.split_whitespace().next()?,
    };
    let points: f64 = number.trim().parse().ok()?;
    points
        .is_finite()
        .then(|| (points * 10.0).round().clamp(-1e6, 1e6) as i32)
}

/// The header section's fields, unfolded: `(name, value)`.
fn fields(raw: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(fields: &str) -> Vec<u8> {
        format!("Received: from a\r\n{fields}From: a@b.test\r\n\r\nX-Spam-Score: 99\r\n")
            .into_bytes()
    }

    #[test]
    fn reads_spamassassin_and_rspamd_fields() {
        let cases = [
            (
                "X-Spam-Status: Yes, score=7.3 required=5.0 tests=A,B\r\n",
                Some(73),
            ),
            ("X-Spam-Status: No, hits=-0.4 required=5.0\r\n", Some(-4)),
            (
                "X-Spam-Status: Yes,\r\n\tscore=12.0 required=5.0\r\n",
                Some(120),
            ),
            ("X-Spam-Score: 4.25\r\n", Some(43)),
            (
                "X-Spamd-Result: default: True [15.30 / 15.00];\r\n\tR_SPF_FAIL(1.00)\r\n",
                Some(153),
            ),
            ("x-rspamd-score: 6.5\r\n", Some(65)),
            ("", None),
            ("X-Spam-Status: Yes\r\n", None),
            ("X-Spam-Score: lots\r\n", None),
            ("X-Spam-Score: NaN\r\n", None),
            ("X-Spam-Score: 1e400\r\n", None),
        ];
        for (fields, want) in cases {
            assert_eq!(score(&mail(fields)), want, "{fields:?}");
        }
    }

    #[test]
    fn the_nearest_filter_speaks_and_the_body_never_does() {
        let two = "X-Spam-Score: 2.0\r\nX-Spam-Status: Yes, score=9.0 required=5.0\r\n";
        assert_eq!(score(&mail(two)), Some(20));
        assert_eq!(score(b"From: a@b.test\r\n\r\nX-Spam-Score: 99\r\n"), None);
        assert_eq!(score(b"X-Spam-Score: 3\n\nbody"), Some(30));
    }
}
