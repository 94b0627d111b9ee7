//! The verdict of a spam filter in front of us, read from the header fields it adds. Only
//! believed from a client listed in `smtp.spam_filters`: anyone else can write these fields.

/// The score a filter gave `raw`, in tenths of a point: the highest of SpamAssassin's
/// `X-Spam-Status` (`score=` or `hits=`) and `X-Spam-Score`, and rspamd's `X-Spamd-Result`
/// (`[score / required]`) and `X-Rspamd-Score`, wherever they stand in the header. The
/// highest, because a filter may add its field above or below what the sender wrote: a
/// sender's own low score must never hide the filter's, and a high one can only hold the
/// sender's own message. `None` when no field can be read.
pub fn score(raw: &[u8]) -> Option<i32> {
    fields(raw)
        .filter_map(|(name, value)| read(&name.to_ascii_lowercase(), &value))
        .max()
}

/// One verdict field's score, in tenths.
fn read(name: &str, value: &str) -> Option<i32> {
    let number = match name {
        "x-spam-status" => value
            .split([' ', ',', '\t'])
            .find_map(|t| t.strip_prefix("score=").or_else(|| t.strip_prefix("hits=")))?,
        "x-spamd-result" => {
            let (_, rest) = value.split_once('[')?;
            rest.split('/').next()?
        }
        "x-spam-score" | "x-rspamd-score" => value.split_whitespace().next()?,
        _ => return None,
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
    fn the_highest_score_counts_and_the_body_never_does() {
        // A sender's forged "ham" above or below the filter's verdict hides nothing.
        let forged_first = "X-Spam-Score: -50\r\nX-Spam-Status: Yes, score=9.0 required=5.0\r\n";
        assert_eq!(score(&mail(forged_first)), Some(90));
        let forged_last = "X-Spamd-Result: default: True [8.00 / 15.00]\r\nX-Spam-Score: 0\r\n";
        assert_eq!(score(&mail(forged_last)), Some(80));
        assert_eq!(
            score(&mail("X-Spam-Score: junk\r\nX-Rspamd-Score: 2\r\n")),
            Some(20)
        );
        assert_eq!(score(b"From: a@b.test\r\n\r\nX-Spam-Score: 99\r\n"), None);
        assert_eq!(score(b"X-Spam-Score: 3\n\nbody"), Some(30));
    }
}
