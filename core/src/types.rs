//! Value types shared by many kinds: Go-style durations (the one parser of them in Atoll, for
//! resources and for flags) and closed string enums.

use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::path::FieldPath;
use crate::validate::{Validate, Violations};

/// A duration as Kuma writes it (Go syntax: `10s`, `1m30s`, `250ms`, `1h`). Kept as written so it
/// round-trips; parsed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration(pub String);

impl Duration {
    pub fn as_std(&self) -> Option<StdDuration> {
        parse_go_duration(&self.0)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Accept any scalar so a wrong value is reported by `validate` with a duration message
        // alongside every other violation, instead of aborting deserialization.
        let v = serde_json::Value::deserialize(d)?;
        Ok(Duration(match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Validate for Duration {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.as_std().is_none() {
            v.add(
                at,
                format!(
                    "must be a duration such as 10s, 1m30s or 250ms (got {:?})",
                    self.0
                ),
            );
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax. Negative durations are refused: no Kuma field takes one.
pub fn parse_go_duration(s: &str) -> Option<StdDuration> {
    let s = s.trim();
    if s == "0" {
        return Some(StdDuration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_nanos: f64 = 0.0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return None;
        }
        let number: f64 = s[start..i].parse().ok()?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit_nanos = match &s[unit_start..i] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_nanos += number * unit_nanos;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return None;
    }
    Some(StdDuration::from_nanos(total_nanos as u64))
}

/// A duration given as a command-line flag or environment variable: Go's syntax (`30s`,
/// `1m30s`, `500ms`), or a bare number of seconds (`1.5`), which atoll-dp has always accepted.
/// The error is a sentence for clap to show.
pub fn parse_flag_duration(text: &str) -> Result<StdDuration, String> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        return StdDuration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a valid duration"));
    }
    parse_go_duration(t)
        .ok_or_else(|| format!("{text:?} is not a duration (examples: 30s, 500ms, 1m30s, 2h)"))
}

/// Declares a closed set of string values. Unknown values deserialize (so every violation is
/// reported at once) and are refused by `Validate`, which lists the allowed values.
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($variant,)+
            /// A value outside the allowed set, kept for the error message.
            Unknown(String),
        }

        impl $name {
            pub const ALLOWED: &'static [&'static str] = &[$($text),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(s) => s.as_str(),
                }
            }

            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = ::serde_json::Value::deserialize(d)?;
                let s = match v {
                    ::serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                Ok(match s.as_str() {
                    $($text => Self::$variant,)+
                    _ => Self::Unknown(s),
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl $crate::validate::Validate for $name {
            fn validate(&self, at: &$crate::path::FieldPath, v: &mut $crate::validate::Violations) {
                if let Self::Unknown(s) = self {
                    v.add(at, format!("must be one of: {} (got {:?})", Self::ALLOWED.join(", "), s));
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(StdDuration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(StdDuration::from_secs(90)));
        assert_eq!(
            parse_go_duration("250ms"),
            Some(StdDuration::from_millis(250))
        );
        assert_eq!(
            parse_go_duration("1.5h"),
            Some(StdDuration::from_secs(5400))
        );
        assert_eq!(parse_go_duration("0"), Some(StdDuration::ZERO));
        assert_eq!(parse_go_duration("0s"), Some(StdDuration::ZERO));
        for bad in ["", "10", "ten seconds", "10x", "-1s", "s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn flag_durations_take_go_syntax_and_bare_seconds() {
        assert_eq!(parse_flag_duration("1m30s"), Ok(StdDuration::from_secs(90)));
        assert_eq!(
            parse_flag_duration("500ms"),
            Ok(StdDuration::from_millis(500))
        );
        assert_eq!(
            parse_flag_duration("1.5"),
            Ok(StdDuration::from_millis(1500))
        );
        assert_eq!(
            parse_flag_duration(" 2h "),
            Ok(StdDuration::from_secs(7200))
        );
        for bad in ["soon", "3d", "-1", "-1s", "NaN", "inf", ""] {
            assert!(parse_flag_duration(bad).is_err(), "{bad}");
        }
    }

    string_enum! {
        enum Color { Red => "Red", Blue => "Blue" }
    }

    #[test]
    fn string_enum_reports_allowed_values() {
        let c: Color = serde_json::from_str("\"Green\"").expect("deserializes");
        let mut v = Violations::new();
        c.validate(&FieldPath::root().field("color"), &mut v);
        assert_eq!(v.violations[0].field, "color");
        assert!(v.violations[0].message.contains("Red, Blue"));
        let ok: Color = serde_json::from_str("\"Blue\"").expect("deserializes");
        assert_eq!(ok, Color::Blue);
        assert!(ok.is_known() && !c.is_known());
    }
}
