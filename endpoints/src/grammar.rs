//! The lexical grammar of endpoint descriptions: splitting into segments, and [`quote`].
//!
//! A description is a list of segments separated by unescaped `:`. A segment holding an
//! unescaped `=` is a keyword segment `key=value` (only the first unescaped `=` splits: later
//! ones belong to the value); any other segment is a positional value. A `\` makes the next
//! character literal wherever it appears, in keys, values and the type, and is itself dropped.
//! Empty segments are kept (`a::b` has three positionals, the middle one empty).

use crate::error::{EndpointError, ErrorKind};

/// One segment of a description, after escapes are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// `Some(key)` for a `key=value` segment, `None` for a positional one.
    pub key: Option<String>,
    /// The value (the whole segment for a positional).
    pub value: String,
    /// The segment exactly as written, escapes included, for error messages.
    pub raw: String,
}

/// Splits `description` into its segments, resolving escapes.
///
/// The only lexical error is a trailing lone `\`.
pub(crate) fn tokenize(description: &str) -> Result<Vec<Segment>, EndpointError> {
    let mut segments = Vec::new();
    let mut key: Option<String> = None;
    let mut current = String::new();
    let mut start = 0;
    let mut chars = description.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => current.push(escaped),
                None => {
                    let raw = description.get(start..).unwrap_or_default();
                    return Err(EndpointError::new(
                        ErrorKind::TrailingBackslash,
                        description,
                        format!(
                            "the segment {} ends with a \\ that escapes nothing; \
                             write \\\\ for a literal backslash",
                            crate::error::quoted(raw)
                        ),
                    )
                    .with_segment(raw));
                }
            },
            ':' => {
                segments.push(Segment {
                    key: key.take(),
                    value: std::mem::take(&mut current),
                    raw: description.get(start..at).unwrap_or_default().to_owned(),
                });
                start = at + 1;
            }
            '=' if key.is_none() => key = Some(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(Segment {
        key,
        value: current,
        raw: description.get(start..).unwrap_or_default().to_owned(),
    });
    Ok(segments)
}

/// Escapes `value` so that it reads back as exactly itself, as a positional segment or as the
/// value of a `key=value` segment.
///
/// Every `\`, `:` and `=` gets a `\` in front; nothing else changes. (Twisted's
/// `quoteStringArgument` leaves `=` alone, so a quoted positional holding `=` is misread as a
/// keyword there; this one is safe in both places.)
///
/// ```
/// use torsion_endpoints::{parse_server, quote, UnixServer};
///
/// let path = "/tmp/odd:name=1\\.sock";
/// assert_eq!(quote(path), "/tmp/odd\\:name\\=1\\\\.sock");
/// let spec = parse_server(&format!("unix:{}", quote(path))).unwrap();
/// let unix = spec.downcast_ref::<UnixServer>().unwrap();
/// assert_eq!(unix.address.to_str(), Some(path));
/// ```
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ':' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(key: Option<&str>, value: &str) -> (Option<String>, String) {
        (key.map(str::to_owned), value.to_owned())
    }

    fn split(s: &str) -> Vec<(Option<String>, String)> {
        tokenize(s)
            .expect("tokenizes")
            .into_iter()
            .map(|s| (s.key, s.value))
            .collect()
    }

    #[test]
    fn splits_on_colons_and_first_equals() {
        assert_eq!(
            split("tcp:80:interface=a=b"),
            vec![
                seg(None, "tcp"),
                seg(None, "80"),
                seg(Some("interface"), "a=b")
            ]
        );
    }

    #[test]
    fn keeps_empty_segments() {
        assert_eq!(
            split("a::b:"),
            vec![seg(None, "a"), seg(None, ""), seg(None, "b"), seg(None, "")]
        );
        assert_eq!(split(""), vec![seg(None, "")]);
        assert_eq!(split("=x"), vec![seg(Some(""), "x")]);
        assert_eq!(split("k="), vec![seg(Some("k"), "")]);
    }

    #[test]
    fn backslash_escapes_anything() {
        assert_eq!(
            split(r"tcp6:interface=\:\:1:inter\=face=x:\\:\8"),
            vec![
                seg(None, "tcp6"),
                seg(Some("interface"), "::1"),
                seg(Some("inter=face"), "x"),
                seg(None, "\\"),
                seg(None, "8"),
            ]
        );
    }

    #[test]
    fn raw_segments_keep_escapes() {
        let segs = tokenize(r"unix:/a\:b:mode=660").expect("tokenizes");
        let raws: Vec<&str> = segs.iter().map(|s| s.raw.as_str()).collect();
        assert_eq!(raws, vec!["unix", r"/a\:b", "mode=660"]);
    }

    #[test]
    fn trailing_backslash_is_an_error() {
        let e = tokenize(r"unix:/tmp/x\").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TrailingBackslash);
        assert_eq!(e.segment(), Some(r"/tmp/x\"));
        // An escaped backslash at the end is fine.
        assert_eq!(split(r"unix:/tmp/x\\")[1], seg(None, r"/tmp/x\"));
    }

    #[test]
    fn quote_round_trips() {
        for v in ["", ":", "=", "\\", "a:b=c\\d", "ünï:cödé", "\\\\::=="] {
            let positional = tokenize(&format!("t:{}", quote(v))).expect("tokenizes");
            assert_eq!(positional.len(), 2);
            assert_eq!(positional[1].key, None);
            assert_eq!(positional[1].value, v);
            let keyword = tokenize(&format!("t:k={}", quote(v))).expect("tokenizes");
            assert_eq!(keyword[1].key.as_deref(), Some("k"));
            assert_eq!(keyword[1].value, v);
        }
    }
}
