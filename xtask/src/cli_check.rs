//! A test helper every binary's flag test shares (included by `#[path]` in
//! the tests of loadgen, stub-server, report and xtask): it checks a
//! command's clap definition and that a list of sample command lines
//! parses every flag of every subcommand at least once.
//!
//! Parsing through the derive type matters: clap checks a flag's type only
//! when the value is read, so a definition that builds fine can still panic
//! the first time a user passes that flag ("Mismatch between definition
//! and access"). Only a parse that gives the flag finds that.

use std::any::TypeId;
use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// Runs clap's own checks on `command`, parses each sample (the arguments
/// after the binary's name) with `parse` (the derive type's
/// `try_parse_from`, so every value is read), and panics naming every
/// argument of any subcommand that no sample gave, or any sample that
/// failed to parse.
pub(crate) fn assert_every_flag_parsed(
    command: Command,
    samples: &[&[&str]],
    parse: impl Fn(&[&str]) -> Result<(), String>,
) {
    command.clone().debug_assert();
    let name = command.get_name().to_owned();
    let mut given = BTreeSet::new();
    let mut failures = Vec::new();
    for sample in samples {
        if let Err(e) = parse(sample) {
            failures.push(format!("{sample:?}: {e}"));
            continue;
        }
        let argv = std::iter::once(name.as_str()).chain(sample.iter().copied());
        match command.clone().try_get_matches_from(argv) {
            Ok(matches) => collect_given(&command, &matches, &name, &mut given),
            Err(e) => failures.push(format!("{sample:?}: {e}")),
        }
    }
    failures.extend(numbers_explained(&command, samples, &parse));
    let mut all = BTreeSet::new();
    collect_all(&command, &name, &mut all);
    let missing: Vec<&String> = all.difference(&given).collect();
    assert!(
        failures.is_empty(),
        "samples that do not parse, or numbers refused without saying what is allowed:\n{}",
        failures.join("\n")
    );
    assert!(
        missing.is_empty(),
        "flags no sample parses (add a sample command line that gives each): {missing:?}"
    );
}

/// `path/id` of every argument the user can give, help and version aside.
fn collect_all(command: &Command, path: &str, out: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id != "help" && id != "version" {
            out.insert(format!("{path}/{id}"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() != "help" {
            collect_all(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
}

/// `path/id` of every argument `matches` got from the command line.
fn collect_given(command: &Command, matches: &ArgMatches, path: &str, out: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) == Some(ValueSource::CommandLine) {
            out.insert(format!("{path}/{id}"));
        }
    }
    if let Some((name, sub_matches)) = matches.subcommand() {
        if let Some(sub) = command.find_subcommand(name) {
            collect_given(sub, sub_matches, &format!("{path} {name}"), out);
        }
    }
}

/// The words of clap's and the standard library's own number errors, which
/// say what went wrong but not what is allowed.
const UNHELPFUL: [&str; 5] = [
    "unexpected argument",
    "invalid digit",
    "invalid float literal",
    "number too large",
    "cannot parse integer",
];

/// For every flag whose value is a number, the first sample that gives it
/// is parsed again with `-1`, `abc` and a number too large for any type in
/// its place: each must be refused with a message of our own, never
/// clap's "unexpected argument '-1'" or Rust's "invalid digit".
fn numbers_explained(
    command: &Command,
    samples: &[&[&str]],
    parse: &impl Fn(&[&str]) -> Result<(), String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut numeric = Vec::new();
    collect_numeric(command, &mut numeric);
    for arg in numeric {
        let Some((sample, at)) = samples
            .iter()
            .find_map(|s| value_position(s, &arg).map(|i| (s, i)))
        else {
            continue;
        };
        let integer = arg.get_value_parser().type_id() != TypeId::of::<f64>()
            && arg.get_value_parser().type_id() != TypeId::of::<f32>();
        for bad in ["-1", "abc", "99999999999999999999999"] {
            let mut argv: Vec<String> = sample.iter().map(|a| (*a).to_owned()).collect();
            argv[at.0] = match at.1 {
                Some(ref prefix) => format!("{prefix}={bad}"),
                None => bad.to_owned(),
            };
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            match parse(&argv) {
                // A signed quantity may take -1, a float a huge number:
                // the configuration's checks judge them after parsing.
                Ok(()) if bad == "-1" || (!integer && bad != "abc") => {}
                Ok(()) => failures.push(format!("{argv:?}: accepted")),
                Err(e) if UNHELPFUL.iter().any(|w| e.contains(w)) => {
                    failures.push(format!("{argv:?}: {e}"))
                }
                Err(_) => {}
            }
        }
    }
    failures
}

/// Every argument of `command` and its subcommands that takes a number.
fn collect_numeric(command: &Command, out: &mut Vec<Arg>) {
    let numeric = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<f32>(),
        TypeId::of::<f64>(),
    ];
    for arg in command.get_arguments() {
        let type_id = arg.get_value_parser().type_id();
        if numeric.iter().any(|t| type_id == *t) {
            out.push(arg.clone());
        }
    }
    for sub in command.get_subcommands() {
        collect_numeric(sub, out);
    }
}

/// Where `arg`'s value sits in `sample`: the index of the token holding it,
/// and the `--flag` prefix when written `--flag=value`.
fn value_position(sample: &[&str], arg: &Arg) -> Option<(usize, Option<String>)> {
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|c| format!("-{c}"));
    for (i, token) in sample.iter().enumerate() {
        let named = Some(token.to_string()) == long || Some(token.to_string()) == short;
        if named && i + 1 < sample.len() {
            return Some((i + 1, None));
        }
        if let Some(long) = &long {
            if token.starts_with(&format!("{long}=")) {
                return Some((i, Some(long.clone())));
            }
        }
    }
    None
}
