//! What a type's parser receives: [`Args`] (the segments after the type), bound to the type's
//! parameter list ([`ParamSpec`]) as [`Bound`], whose [`Value`]s parse themselves strictly.
//!
//! Every built-in type is written with these, so a type an application registers gets the same
//! strictness and the same error messages for free:
//!
//! ```
//! use torsion_endpoints::{
//!     Args, EndpointError, ErrorKind, ParamSpec, ParamValue, Registry, ServerSpec, ServerType,
//! };
//! use std::any::Any;
//!
//! /// `pipe:NAME:depth=N`
//! #[derive(Debug)]
//! struct Pipe {
//!     name: String,
//!     depth: u32,
//! }
//!
//! impl ServerSpec for Pipe {
//!     fn type_name(&self) -> &str {
//!         "pipe"
//!     }
//!     fn params(&self) -> Vec<(String, ParamValue)> {
//!         vec![
//!             ("name".into(), ParamValue::Str(self.name.clone())),
//!             ("depth".into(), ParamValue::Int(self.depth.into())),
//!         ]
//!     }
//!     fn as_any(&self) -> &dyn Any {
//!         self
//!     }
//! }
//!
//! struct PipeType;
//!
//! impl ServerType for PipeType {
//!     fn name(&self) -> &str {
//!         "pipe"
//!     }
//!     fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
//!         let b = args.bind(&[ParamSpec::positional("name"), ParamSpec::keyword("depth")])?;
//!         let name = b.require("name")?.non_empty()?.to_owned();
//!         let depth = b.parse_or("depth", 8, |v| v.u32_in(1, 1024))?;
//!         Ok(Box::new(Pipe { name, depth }))
//!     }
//! }
//!
//! let mut registry = Registry::with_builtins();
//! registry.register_server(PipeType);
//! let spec = registry.parse_server("PIPE:jobs:depth=4").unwrap();
//! assert_eq!(spec.downcast_ref::<Pipe>().unwrap().depth, 4);
//!
//! let err = registry.parse_server("pipe:jobs:depth=0").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::OutOfRange);
//! let err = registry.parse_server("pipe:jobs:name=x").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::DuplicateParameter);
//! ```

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{EndpointError, ErrorKind, Side, quoted};
use crate::grammar::Segment;
use crate::values;

/// One parameter a type takes: its keyword name and whether it may also be given positionally.
///
/// In the list passed to [`Args::bind`], the positional-capable parameters take the positional
/// segments in the order they are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// The keyword, as written in `key=value` (case-sensitive, like Twisted's).
    pub name: &'static str,
    /// Whether a positional segment may supply it.
    pub positional: bool,
}

impl ParamSpec {
    /// A parameter that may be given positionally or as `name=value`.
    pub const fn positional(name: &'static str) -> Self {
        ParamSpec {
            name,
            positional: true,
        }
    }

    /// A parameter that may only be given as `name=value`.
    pub const fn keyword(name: &'static str) -> Self {
        ParamSpec {
            name,
            positional: false,
        }
    }
}

/// The segments of a description after its type, as handed to a
/// [`ServerType`](crate::ServerType) or [`ClientType`](crate::ClientType).
#[derive(Clone, Debug)]
pub struct Args<'a> {
    input: &'a str,
    side: Side,
    type_name: String,
    positionals: Vec<Segment>,
    keywords: Vec<Segment>,
}

impl<'a> Args<'a> {
    pub(crate) fn new(
        input: &'a str,
        side: Side,
        type_name: String,
        positionals: Vec<Segment>,
        keywords: Vec<Segment>,
    ) -> Self {
        Args {
            input,
            side,
            type_name,
            positionals,
            keywords,
        }
    }

    /// The whole description being parsed.
    pub fn input(&self) -> &'a str {
        self.input
    }

    /// Whether this is a server or a client description.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The type, lower-cased (ASCII), as the registry matched it.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The positional values after the type, in order, escapes resolved.
    pub fn positionals(&self) -> impl Iterator<Item = &str> {
        self.positionals.iter().map(|s| s.value.as_str())
    }

    /// The `key=value` segments in order (a repeated key appears each time), escapes resolved.
    pub fn keywords(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keywords
            .iter()
            .map(|s| (s.key.as_deref().unwrap_or_default(), s.value.as_str()))
    }

    /// Whether some `key=value` segment has this key.
    pub fn has_keyword(&self, name: &str) -> bool {
        self.keywords().any(|(k, _)| k == name)
    }

    /// `a tcp server`, `a unix client`: how messages name what is being parsed.
    pub fn what(&self) -> String {
        format!("a {} {}", self.type_name, self.side)
    }

    /// An error about this description, of `kind`, with `detail` as its message.
    pub fn error(&self, kind: ErrorKind, detail: impl Into<String>) -> EndpointError {
        EndpointError::new(kind, self.input, detail)
    }

    /// Assigns the segments to the parameters in `params`, checking, in this order, that
    /// every keyword is known ([`ErrorKind::UnknownParameter`], listing `params`), that there
    /// are no more positionals than positional-capable parameters
    /// ([`ErrorKind::TooManyPositionals`]) and that no parameter is given twice
    /// ([`ErrorKind::DuplicateParameter`]).
    pub fn bind<'b>(&'b self, params: &[ParamSpec]) -> Result<Bound<'b>, EndpointError> {
        let valid = || params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
        for seg in &self.keywords {
            let key = seg.key.as_deref().unwrap_or_default();
            if !params.iter().any(|p| p.name == key) {
                let mut detail = format!(
                    "unknown parameter {} for {}; valid parameters: {}",
                    quoted(key),
                    self.what(),
                    valid()
                );
                if let Some(p) = params.iter().find(|p| p.name.eq_ignore_ascii_case(key)) {
                    detail.push_str(&format!(
                        " (parameter names are case-sensitive: did you mean {}?)",
                        p.name
                    ));
                }
                return Err(self
                    .error(ErrorKind::UnknownParameter, detail)
                    .with_param(key)
                    .with_segment(seg.raw.clone()));
            }
        }

        let slots: Vec<usize> = (0..params.len())
            .filter(|&i| params[i].positional)
            .collect();
        if let Some(extra) = self.positionals.get(slots.len()) {
            let names: Vec<&str> = slots.iter().map(|&i| params[i].name).collect();
            let takes = if names.is_empty() {
                "takes no positional values after the type".to_owned()
            } else {
                format!("takes at most {} ({})", names.len(), names.join(", "))
            };
            return Err(self
                .error(
                    ErrorKind::TooManyPositionals,
                    format!(
                        "too many positional values: {} would be positional {} but {} {}; \
                         a \":\" inside a value must be escaped as \"\\:\"",
                        quoted(&extra.raw),
                        slots.len() + 1,
                        self.what(),
                        takes
                    ),
                )
                .with_segment(extra.raw.clone()));
        }

        let mut given: Vec<Option<Given<'b>>> = vec![None; params.len()];
        for (n, seg) in self.positionals.iter().enumerate() {
            if let Some(&slot) = slots.get(n) {
                given[slot] = Some(Given {
                    value: &seg.value,
                    raw: &seg.raw,
                    positional: Some(n + 1),
                });
            }
        }
        for seg in &self.keywords {
            let key = seg.key.as_deref().unwrap_or_default();
            let Some(slot) = params.iter().position(|p| p.name == key) else {
                continue;
            };
            let this = Given {
                value: &seg.value,
                raw: &seg.raw,
                positional: None,
            };
            if let Some(before) = &given[slot] {
                return Err(self
                    .error(
                        ErrorKind::DuplicateParameter,
                        format!(
                            "parameter {} is given twice: {} and {}",
                            quoted(key),
                            before.origin(),
                            this.origin()
                        ),
                    )
                    .with_param(key)
                    .with_segment(seg.raw.clone()));
            }
            given[slot] = Some(this);
        }
        Ok(Bound {
            args: self,
            params: params.to_vec(),
            given,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Given<'b> {
    value: &'b str,
    raw: &'b str,
    /// 1-based index among the positionals after the type; `None` for a keyword.
    positional: Option<usize>,
}

impl Given<'_> {
    fn origin(&self) -> String {
        match self.positional {
            Some(n) => format!("as positional {n} {}", quoted(self.raw)),
            None => format!("as {}", quoted(self.raw)),
        }
    }
}

/// The parameters of a description after [`Args::bind`]: each one given at most once.
#[derive(Clone, Debug)]
pub struct Bound<'b> {
    args: &'b Args<'b>,
    params: Vec<ParamSpec>,
    given: Vec<Option<Given<'b>>>,
}

impl<'b> Bound<'b> {
    /// The arguments this was bound from.
    pub fn args(&self) -> &'b Args<'b> {
        self.args
    }

    /// The value of `name`, if it was given (`None` too for a name not in the parameter list).
    pub fn get(&self, name: &str) -> Option<Value<'b>> {
        let slot = self.params.iter().position(|p| p.name == name)?;
        let given = self.given.get(slot).copied().flatten()?;
        Some(Value {
            args: self.args,
            name: self.params[slot].name,
            given,
        })
    }

    /// The value of `name`, or a [`ErrorKind::MissingParameter`] error saying how to give it.
    pub fn require(&self, name: &str) -> Result<Value<'b>, EndpointError> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// The [`ErrorKind::MissingParameter`] error for `name`.
    pub fn missing(&self, name: &str) -> EndpointError {
        let position = self
            .params
            .iter()
            .filter(|p| p.positional)
            .position(|p| p.name == name);
        let how = match position {
            Some(i) => format!("give it as positional {} or as {name}=VALUE", i + 1),
            None => format!("give it as {name}=VALUE"),
        };
        self.args
            .error(
                ErrorKind::MissingParameter,
                format!(
                    "missing required parameter {} for {}; {how}",
                    quoted(name),
                    self.args.what()
                ),
            )
            .with_param(name)
    }

    /// `f(value)` if `name` was given, else `default`.
    pub fn parse_or<T>(
        &self,
        name: &str,
        default: T,
        f: impl FnOnce(Value<'b>) -> Result<T, EndpointError>,
    ) -> Result<T, EndpointError> {
        match self.get(name) {
            Some(v) => f(v),
            None => Ok(default),
        }
    }

    /// `Some(f(value))` if `name` was given, else `None`.
    pub fn parse_opt<T>(
        &self,
        name: &str,
        f: impl FnOnce(Value<'b>) -> Result<T, EndpointError>,
    ) -> Result<Option<T>, EndpointError> {
        self.get(name).map(f).transpose()
    }
}

/// One given parameter value, with what is needed to report a bad value precisely.
///
/// The parsing methods are strict: numbers are plain ASCII digits; flags are `0` or `1`.
#[derive(Clone, Copy, Debug)]
pub struct Value<'b> {
    args: &'b Args<'b>,
    name: &'static str,
    given: Given<'b>,
}

impl<'b> Value<'b> {
    /// The parameter's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The value, escapes resolved.
    pub fn as_str(&self) -> &'b str {
        self.given.value
    }

    /// The segment it came from, exactly as written.
    pub fn segment(&self) -> &'b str {
        self.given.raw
    }

    /// Whether it was given positionally (rather than as `name=value`).
    pub fn is_positional(&self) -> bool {
        self.given.positional.is_some()
    }

    /// An error of `kind` about this value: `invalid NAME "VALUE" (positional N): REASON`.
    pub fn error(&self, kind: ErrorKind, reason: impl AsRef<str>) -> EndpointError {
        let position = match self.given.positional {
            Some(n) => format!(" (positional {n})"),
            None => String::new(),
        };
        self.args
            .error(
                kind,
                format!(
                    "invalid {} {}{position}: {}",
                    self.name,
                    quoted(self.given.value),
                    reason.as_ref()
                ),
            )
            .with_param(self.name)
            .with_segment(self.given.raw)
    }

    fn check<T>(&self, r: Result<T, values::Bad>) -> Result<T, EndpointError> {
        r.map_err(|bad| self.error(bad.kind, bad.reason))
    }

    /// The value if it is not empty ([`ErrorKind::InvalidValue`] otherwise).
    pub fn non_empty(&self) -> Result<&'b str, EndpointError> {
        if self.given.value.is_empty() {
            Err(self.error(ErrorKind::InvalidValue, "must not be empty"))
        } else {
            Ok(self.given.value)
        }
    }

    /// A plain decimal number from `min` to `max`.
    pub fn u64_in(&self, min: u64, max: u64) -> Result<u64, EndpointError> {
        self.check(values::decimal_in(self.given.value, min, max))
    }

    /// A plain decimal number from `min` to `max`.
    pub fn u32_in(&self, min: u32, max: u32) -> Result<u32, EndpointError> {
        let n = self.u64_in(min.into(), max.into())?;
        // In range by construction; the fallback is never taken.
        Ok(u32::try_from(n).unwrap_or(max))
    }

    /// A port number from 0 to 65535 (0 asks the system for a free port).
    pub fn port(&self) -> Result<u16, EndpointError> {
        let n = self.u64_in(0, u16::MAX.into())?;
        Ok(u16::try_from(n).unwrap_or(u16::MAX))
    }

    /// `0` (false) or `1` (true).
    pub fn flag(&self) -> Result<bool, EndpointError> {
        self.check(values::flag(self.given.value))
    }

    /// Octal digits with an optional `0o` prefix, at most `max`.
    pub fn octal_up_to(&self, max: u32) -> Result<u32, EndpointError> {
        self.check(values::octal_up_to(self.given.value, max))
    }

    /// Decimal seconds, with an optional fraction (`30`, `1.5`).
    pub fn seconds(&self) -> Result<Duration, EndpointError> {
        self.check(values::seconds(self.given.value))
    }

    /// An IP literal; an IPv6 one may carry a `%scope` (interface name or number), returned
    /// separately. Host names are rejected ([`ErrorKind::InvalidAddress`]).
    pub fn ip(&self) -> Result<(IpAddr, Option<String>), EndpointError> {
        self.check(values::scoped_ip(self.given.value))
    }

    /// The `interface` of an IP server of type `name` (`tcp`, `udp6`, ...): an IP literal of
    /// the family it listens on (IPv6 when `v6`), else [`ErrorKind::WrongFamily`] naming the
    /// type to use instead.
    pub fn interface(
        &self,
        name: &str,
        v6: bool,
    ) -> Result<(IpAddr, Option<String>), EndpointError> {
        let (ip, scope) = self.ip()?;
        let base = name.trim_end_matches('6');
        let what = if base == "tcp" { "server" } else { "port" };
        match (v6, ip) {
            (false, IpAddr::V6(_)) => Err(self.error(
                ErrorKind::WrongFamily,
                format!(
                    "an IPv6 address, but a {base} {what} listens on IPv4; use {base}6 for IPv6"
                ),
            )),
            (true, IpAddr::V4(_)) => Err(self.error(
                ErrorKind::WrongFamily,
                format!(
                    "an IPv4 address, but a {base}6 {what} listens on IPv6; use {base} for \
                     IPv4, or an IPv4-mapped address such as \\:\\:ffff\\:127.0.0.1"
                ),
            )),
            _ => Ok((ip, scope)),
        }
    }

    /// The index in `choices` of the one that equals the value, ignoring ASCII case
    /// ([`ErrorKind::InvalidValue`], listing the choices, if none does).
    pub fn choice(&self, choices: &[&str]) -> Result<usize, EndpointError> {
        choices
            .iter()
            .position(|c| c.eq_ignore_ascii_case(self.given.value))
            .ok_or_else(|| {
                self.error(
                    ErrorKind::InvalidValue,
                    format!("valid values: {}", choices.join(", ")),
                )
            })
    }
}
