//! Email addresses as a parsed newtype: once built, an address is trusted everywhere.

use std::fmt;

/// A lowercase `local@domain` address with no routing tricks in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    full: String,
    at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid email address: {reason}")]
pub struct AddressError {
    pub input: String,
    pub reason: &'static str,
}

impl EmailAddress {
    /// Parses an address, optionally in angle brackets.
    ///
    /// Rejects everything a relay could be tricked with: percent-hack (`a%b@c`), bang paths,
    /// source routes (`@a,@b:c@d`), quoted local parts and a second `@`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let err = |reason| AddressError {
            input: input.chars().take(256).collect(),
            reason,
        };
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > 254 {
            return Err(err("it is longer than 254 characters"));
        }
        if s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || "\"%!:,;<>()[]\\".contains(c))
        {
            return Err(err("it contains a character not allowed in an address"));
        }
        let Some(at) = s.find('@') else {
            return Err(err("it has no @"));
        };
        if s[at + 1..].contains('@') {
            return Err(err("it has more than one @"));
        }
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before @ must be 1 to 64 characters"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err("the part before @ has a misplaced dot"));
        }
        let domain = domain.trim_end_matches('.');
        if !postern_config::is_domain(domain) || !domain.contains('.') && domain != "localhost" {
            return Err(err("the domain is not valid"));
        }
        let full = format!("{}@{}", local, domain).to_lowercase();
        let at = full.rfind('@').unwrap_or(0);
        Ok(Self { full, at })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    pub fn into_string(self) -> String {
        self.full
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn accepts_and_lowercases() {
        let a = EmailAddress::parse("<Shop.Cat123@Example.COM>").expect("valid");
        assert_eq!(a.as_str(), "shop.cat123@example.com");
        assert_eq!((a.local(), a.domain()), ("shop.cat123", "example.com"));
        assert!(EmailAddress::parse("a+tag@sub.example.org").is_ok());
        assert!(EmailAddress::parse("postmaster@localhost").is_ok());
    }

    #[test]
    fn rejects_routing_tricks_and_garbage() {
        for bad in [
            "",
            "plain",
            "a%b@alias.test",
            "b!a@alias.test",
            "@relay.test:victim@alias.test",
            "@a,@b:c@d.test",
            "\"x@evil.test\"@alias.test",
            "a@b@alias.test",
            "a b@alias.test",
            "a@alias..test",
            "a@-alias.test",
            ".a@alias.test",
            "a@nodot",
            "a\r\n@alias.test",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
