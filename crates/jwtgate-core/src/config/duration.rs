//! Human durations in config files: `250ms`, `60s`, `5m`, `24h`, `7d`.

use std::time::Duration;

/// Parses `<integer><unit>` with unit one of `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write it like 60s, 5m or 24h"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a duration: write it like 60s, 5m or 24h"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large a duration"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too large a duration"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(format!("`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d")),
    }
}

/// Renders a duration the way a config file would spell it.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// Serde adapter so raw config structs can hold `Duration`s written as text.
pub mod serde_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes an optional duration string.
    pub fn option<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(de)?;
        text.map(|t| super::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }

    /// Deserializes a required duration string.
    pub fn required<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn refuses_missing_or_unknown_units_and_overflow() {
        assert!(parse("60").unwrap_err().contains("no unit"));
        assert!(parse("5y").unwrap_err().contains("unknown unit"));
        assert!(parse("s").unwrap_err().contains("not a duration"));
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999d").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "1m", "5m", "1h", "1d", "90s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert_eq!(format(Duration::from_secs(60)), "1m");
    }
}
