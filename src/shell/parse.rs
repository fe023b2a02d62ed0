//! zkCli's command-line grammar: splitting a line into words (`ZooKeeperMain.MyCommandOptions`)
//! and the Apache commons-cli `DefaultParser` rules its commands use for `-x` options.

use std::collections::BTreeMap;

/// Splits a line as zkCli does: words separated by whitespace; a word starting with `"` or `'`
/// runs to the matching quote (which may be followed by more characters up to whitespace), and the
/// quotes are stripped when they enclose the whole word.
pub fn split_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let c = chars[i];
        if c == '"' || c == '\'' {
            // `"[^"]*"`: up to the closing quote; an unclosed quote matches nothing and the Java
            // regex skips that character, which we imitate.
            match chars[i + 1..].iter().position(|&x| x == c) {
                Some(off) => {
                    let end = i + 1 + off;
                    words.push(chars[start + 1..end].iter().collect());
                    i = end + 1;
                }
                None => {
                    i += 1;
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            words.push(chars[start..i].iter().collect());
        }
    }
    words
}

/// One option a command knows: its letter and whether it takes a value.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec {
    pub name: char,
    pub takes_value: bool,
}

pub const fn flag(name: char) -> OptSpec {
    OptSpec {
        name,
        takes_value: false,
    }
}

pub const fn valued(name: char) -> OptSpec {
    OptSpec {
        name,
        takes_value: true,
    }
}

/// The result of parsing a command's words: options seen and the remaining words (the command name
/// first, as commons-cli's `getArgs()` returns them in zkCli).
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    pub opts: BTreeMap<char, Option<String>>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, c: char) -> bool {
        self.opts.contains_key(&c)
    }

    pub fn value(&self, c: char) -> Option<&str> {
        self.opts.get(&c).and_then(|v| v.as_deref())
    }
}

/// Parses `words` with commons-cli's rules: options may appear anywhere; `--` ends them; `-abc`
/// bundles flags; `-vVALUE` or `-v VALUE` for an option with a value; a negative number is a word.
/// The error text is what zkCli prints for the matching `ParseException`.
pub fn parse_options(words: &[String], specs: &[OptSpec]) -> Result<Parsed, String> {
    let find = |c: char| specs.iter().find(|s| s.name == c);
    let mut parsed = Parsed::default();
    let mut it = words.iter().peekable();
    let mut only_args = false;
    while let Some(w) = it.next() {
        if only_args || !w.starts_with('-') || w == "-" || is_number(w) {
            parsed.args.push(w.clone());
            continue;
        }
        if w == "--" {
            only_args = true;
            continue;
        }
        let body = &w[1..];
        let mut chars = body.chars();
        let first = chars.next().unwrap_or('-');
        let Some(spec) = find(first) else {
            return Err(format!(
                "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {w}"
            ));
        };
        if spec.takes_value {
            let rest: String = chars.collect();
            let value = if !rest.is_empty() {
                rest
            } else {
                match it.next() {
                    Some(v) => v.clone(),
                    None => {
                        return Err(format!(
                            "org.apache.commons.cli.MissingArgumentException: Missing argument for option: {first}"
                        ))
                    }
                }
            };
            parsed.opts.insert(first, Some(value));
        } else {
            parsed.opts.insert(first, None);
            for c in chars {
                match find(c) {
                    Some(s) if !s.takes_value => {
                        parsed.opts.insert(c, None);
                    }
                    _ => {
                        return Err(format!(
                            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {w}"
                        ))
                    }
                }
            }
        }
    }
    Ok(parsed)
}

fn is_number(w: &str) -> bool {
    w.parse::<f64>().is_ok()
}
