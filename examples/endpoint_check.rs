//! Check an endpoint description before deploying it, and see what it means.
//!
//! ```text
//! endpoint_check server|client DESCRIPTION [--json]
//! ```
//!
//! Exit status 0 when the description is valid, 2 when it is not (the error goes to stderr,
//! or into the JSON on stdout with `--json`) and 2 for bad usage.
//!
//! ```text
//! $ endpoint_check server 'tcp6:8080:interface=\:\:1'
//! tcp6 server
//!   port = 8080
//!   interface = ::1
//!   backlog = 1024
//!   reuseport = false
//!   ipv6only = none
//! $ endpoint_check client tcp:example.org:80 --json
//! {"ok":true,"kind":"client","type":"tcp","params":{"host":"example.org","port":80,"timeout":30,"bindAddress":null}}
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use torsion::endpoints::{EndpointError, ParamValue, parse_client, parse_server};

const USAGE: &str = "usage: endpoint_check server|client DESCRIPTION [--json]";

/// What the command line asks for.
struct Request {
    kind: String,
    description: Result<String, OsString>,
    json: bool,
}

fn parse_command_line(args: impl Iterator<Item = OsString>) -> Result<Request, String> {
    let mut json = false;
    let mut operands = Vec::new();
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg == "--json" {
            json = true;
        } else if !options_done && arg.to_string_lossy().starts_with('-') && arg != "-" {
            return Err(format!("unknown option {:?}", arg.to_string_lossy()));
        } else {
            operands.push(arg);
        }
    }
    let mut operands = operands.into_iter();
    let (Some(kind), Some(description), None) = (operands.next(), operands.next(), operands.next())
    else {
        return Err("expected a kind and one description".to_owned());
    };
    let kind = match kind.to_str() {
        Some(k @ ("server" | "client")) => k.to_owned(),
        _ => {
            return Err(format!(
                "the kind must be server or client, not {:?}",
                kind.to_string_lossy()
            ));
        }
    };
    Ok(Request {
        kind,
        description: description.into_string(),
        json,
    })
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(value: &ParamValue) -> String {
    match value {
        ParamValue::Int(n) => n.to_string(),
        ParamValue::Float(x) if x.is_finite() => x.to_string(),
        ParamValue::Float(_) | ParamValue::Null => "null".to_owned(),
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Str(s) => json_string(s),
    }
}

/// The parsed description: its type and its parameters.
fn check(
    kind: &str,
    description: &str,
) -> Result<(String, Vec<(String, ParamValue)>), EndpointError> {
    if kind == "server" {
        let spec = parse_server(description)?;
        Ok((spec.type_name().to_owned(), spec.params()))
    } else {
        let spec = parse_client(description)?;
        Ok((spec.type_name().to_owned(), spec.params()))
    }
}

fn main() -> ExitCode {
    let request = match parse_command_line(std::env::args_os().skip(1)) {
        Ok(r) => r,
        Err(problem) => {
            let help = std::env::args_os()
                .skip(1)
                .any(|a| a == "-h" || a == "--help");
            if help {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("endpoint_check: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match &request.description {
        Ok(description) => check(&request.kind, description).map_err(|e| e.to_string()),
        Err(raw) => Err(format!(
            "the description {:?} is not valid UTF-8",
            raw.to_string_lossy()
        )),
    };
    match (outcome, request.json) {
        (Ok((type_name, params)), true) => {
            let fields: Vec<String> = params
                .iter()
                .map(|(name, value)| format!("{}:{}", json_string(name), json_value(value)))
                .collect();
            println!(
                "{{\"ok\":true,\"kind\":{},\"type\":{},\"params\":{{{}}}}}",
                json_string(&request.kind),
                json_string(&type_name),
                fields.join(",")
            );
            ExitCode::SUCCESS
        }
        (Ok((type_name, params)), false) => {
            println!("{type_name} {}", request.kind);
            for (name, value) in &params {
                match (type_name.as_str(), name.as_str(), value) {
                    // The mode of a Unix socket reads best in octal, as it is written.
                    ("unix" | "unixgram", "mode", ParamValue::Int(mode)) => {
                        println!("  {name} = 0o{mode:o}")
                    }
                    _ => println!("  {name} = {value}"),
                }
            }
            ExitCode::SUCCESS
        }
        (Err(error), true) => {
            println!("{{\"ok\":false,\"error\":{}}}", json_string(&error));
            ExitCode::from(2)
        }
        (Err(error), false) => {
            eprintln!("endpoint_check: {error}");
            ExitCode::from(2)
        }
    }
}
